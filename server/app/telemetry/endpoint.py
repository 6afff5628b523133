"""The Prometheus endpoint, served by the launcher for all of its server processes.

Workers (uvicorn's, or the one Envoy process of ``--http2``) write their values
to a directory (prometheus_client's multiprocess mode); the launcher reads
them all on each scrape, on its own address, so one scrape shows the whole
server. Process metrics (CPU, memory, open files) come per worker, labelled
with its ``pid``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from server.app.settings import Settings

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PID_OF_FILE = re.compile(r"_(\d+)\.db$")


@contextmanager
def metrics_endpoint(settings: Settings) -> Iterator[None]:
    """Serve ``/metrics`` on ``metrics_host:metrics_port`` while the block runs (if set).

    Must run before the server starts its workers: they find the directory in
    the environment they inherit.
    """
    if settings.metrics_port is None:
        yield
        return
    with _values_directory() as directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        registry.register(WorkerProcesses(directory))
        server, thread = start_http_server(
            settings.metrics_port, settings.metrics_host, registry=registry
        )
        print(
            f"library metrics on http://{settings.metrics_host}:{server.server_port}/metrics",
            file=sys.stderr,
            flush=True,
        )
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


@contextmanager
def _values_directory() -> Iterator[Path]:
    given = os.environ.get(MULTIPROC_DIR_ENV)
    if given:
        # A directory the operator chose: last run's values must not count again.
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        _use_directory(given)
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="library-metrics-") as directory:
        _use_directory(directory)
        try:
            yield Path(directory)
        finally:
            del os.environ[MULTIPROC_DIR_ENV]


def _use_directory(directory: str) -> None:
    os.environ[MULTIPROC_DIR_ENV] = directory
    # prometheus_client picks its value store when first imported; this
    # process may serve requests itself (one uvicorn worker), so pick again.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def _worker_pids(directory: Path) -> set[int]:
    return {int(m.group(1)) for f in directory.glob("*.db") if (m := _PID_OF_FILE.search(f.name))}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


class WorkerProcesses(Collector):
    """Each live worker's process metrics, with a ``pid`` label; forgets dead workers' gauges."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterable[Metric]:
        """The ``process_*`` metrics of every worker that wrote values."""
        families: dict[str, Metric] = {}
        for pid in sorted(_worker_pids(self._directory)):
            if not _alive(pid):
                # Its in-flight and open-stream gauges would otherwise count forever.
                mark_process_dead(pid, str(self._directory))  # type: ignore[no-untyped-call]
                continue
            for metric in ProcessCollector(pid=_constant(pid), registry=None).collect():
                family = families.setdefault(
                    metric.name, Metric(metric.name, metric.documentation, metric.type)
                )
                for sample in metric.samples:
                    family.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return families.values()
