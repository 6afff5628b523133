"""The Prometheus endpoint, served by the launcher for all of its server processes.

Workers (uvicorn's, or the one Envoy process of ``--http2``) write their values
to a directory (prometheus_client's multiprocess mode); the launcher reads
them all on each scrape, on its own address, so one scrape shows the whole
server. Process metrics (CPU, memory, open files) come per worker, labelled
with its ``pid``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app, values
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from server.app.settings import Settings

log = logging.getLogger("library")

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
MAX_SCRAPES = 8
"""Connections /metrics serves at once; more are closed at once (a scraper needs one)."""
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
        # A scraper silent for as long as a client may take over its headers is hung up on.
        server = _BoundedServer(
            settings.metrics_host, settings.metrics_port, settings.header_timeout
        )
        server.set_app(make_wsgi_app(registry))
        thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        thread.start()
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


class _ScrapeHandler(WSGIRequestHandler):
    """One scrape's connection, hung up on after ``silence`` seconds; no log line per scrape.

    Each read is bounded by that time, and so is the whole connection: a client
    trickling a byte at a time would otherwise keep its slot for ever.
    """

    server: _BoundedServer

    def setup(self) -> None:
        """Bound each read, and the whole connection, by the server's ``silence`` seconds."""
        super().setup()
        self.connection.settimeout(self.server.silence)
        self._hang_up = threading.Timer(self.server.silence, self._end)
        self._hang_up.daemon = True
        self._hang_up.start()

    def _end(self) -> None:
        # Shutting the socket down wakes the handler's blocked read or write.
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        """Stop the connection's clock once it is served."""
        self._hang_up.cancel()
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Nothing: the access log is for the API."""


class _BoundedServer(ThreadingWSGIServer):
    """prometheus_client's thread-per-connection server, bounded in connections and time.

    Its own ``start_http_server`` gives each connection a thread for as long as
    the client keeps it, idle or not, in the launcher of every worker.
    """

    # socketserver's default of 5 would keep a burst of connections waiting in
    # SYN retries instead of being served or refused at once.
    request_queue_size = 64

    def __init__(self, host: str, port: int, silence: float) -> None:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        self.address_family = family
        self.silence = silence
        self._slots = threading.BoundedSemaphore(MAX_SCRAPES)
        self._refused = 0
        super().__init__((str(address[0]), port), _ScrapeHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve it on a thread of its own, or close it at once past MAX_SCRAPES."""
        if not self._slots.acquire(blocking=False):
            self._refused += 1
            log.warning(
                "/metrics: %d connections open, its limit; closed one from %s (%d so far)",
                MAX_SCRAPES,
                client_address[0],
                self._refused,
            )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went silent (hung up on) or away is no error of the server's."""
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("/metrics: connection from %s ended", client_address[0], exc_info=True)
            return
        super().handle_error(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


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
