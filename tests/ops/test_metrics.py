"""/metrics, read with prometheus_client's own parser: counters and histograms move."""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from prometheus_client.parser import text_string_to_metric_families

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.multiprocess.procs import workers_of
from tests.ops.collector import OtlpCollector
from tests.ops.conftest import Traced, grpc_client, metrics_url, telemetry_env
from tests.support.clients import LIBRARIAN, present
from tests.support.data import isbn13
from tests.support.server import Http2Server, ServerProcess, wait_until

GET_BOOK = "library.v1.LibraryService/GetBook"
Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    """Every sample /metrics shows now."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def scrape_until(url: str, settled: Callable[[Samples], bool], what: str) -> Samples:
    """The first scrape where ``settled`` holds.

    A call is counted once its response has left, so a client may see the
    answer a moment before the scrape sees the call.
    """
    found: list[Samples] = []

    def scraped() -> bool:
        found[:] = [scrape(url)]
        return settled(found[0])

    wait_until(scraped, 5, what)
    return found[0]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels``."""
    return sum(
        value
        for sample, have, value in samples
        if sample == name and labels.items() <= have.items()
    )


def add_book(client: LibraryServiceClientSync) -> pb.Book:
    request = pb.CreateBookRequest(title="Counted", author="A", isbn=isbn13(), published_year=2001)
    return present(client.create_book(request, headers=LIBRARIAN).book)


def get_books(client: LibraryServiceClientSync, book_id: int, times: int) -> None:
    for _ in range(times):
        client.get_book(pb.GetBookRequest(id=book_id))


def test_calls_and_latency_by_method_and_code(observed: ServerProcess) -> None:
    url = metrics_url(observed.log_path)
    with LibraryServiceClientSync(observed.url) as client:
        book = add_book(client)
        before = scrape(url)
        get_books(client, book.id, 3)
        with pytest.raises(ConnectError):
            client.get_book(pb.GetBookRequest(id=10**12))
    ok = {"method": GET_BOOK, "code": "ok"}

    def moved_in(samples: Samples, name: str, **labels: str) -> float:
        return total(samples, name, **labels) - total(before, name, **labels)

    after = scrape_until(
        url,
        lambda now: (
            moved_in(now, "library_rpc_calls_total", **ok) >= 3
            and moved_in(now, "library_rpc_calls_total", method=GET_BOOK, code="not_found") >= 1
        ),
        "the four calls to be counted",
    )

    def moved(name: str, **labels: str) -> float:
        return moved_in(after, name, **labels)

    assert moved("library_rpc_calls_total", protocol="connect", **ok) == 3
    assert moved("library_rpc_calls_total", method=GET_BOOK, code="not_found") == 1
    assert moved("library_rpc_duration_seconds_count", **ok) == 3
    assert moved("library_rpc_duration_seconds_bucket", le="+Inf", **ok) == 3
    assert moved("library_rpc_duration_seconds_sum", **ok) > 0
    # The scrape's own call is not an RPC; nothing else is in flight.
    assert total(after, "library_rpc_in_flight", method=GET_BOOK) == 0
    assert total(after, "process_resident_memory_bytes") > 0


def test_open_watches(traced: Traced, observed: ServerProcess, observed_h2: Http2Server) -> None:
    url = metrics_url(traced.server_log)
    add_book(traced.client)
    watch = {"method": "library.v1.LibraryService/WatchBooks"}
    open_now = "library_watch_streams_open"
    ended_before = total(scrape(url), "library_rpc_calls_total", **watch)
    stream = traced.client.watch_books(pb.WatchBooksRequest(since_revision=0), timeout_ms=15_000)
    next(stream)
    samples = scrape_until(url, lambda now: total(now, open_now) == 1, "one open watch")
    assert total(samples, "library_rpc_in_flight", **watch) == 1
    assert total(samples, "library_watch_lag_revisions") == 0
    stream.close()  # type: ignore[attr-defined]
    # The call is counted before its stream stops being open (a scrape never sees
    # it neither open nor done), so wait for both.
    samples = scrape_until(
        url,
        lambda now: (
            total(now, "library_rpc_calls_total", **watch) > ended_before
            and total(now, open_now) == 0
        ),
        "the watch to end",
    )
    assert total(samples, "library_rpc_in_flight", **watch) == 0
    assert total(samples, "library_rpc_calls_total", code="canceled", **watch) >= 1


def test_database_pool(observed: ServerProcess, backend: str) -> None:
    samples = scrape(metrics_url(observed.log_path))
    if backend == "postgres":
        assert total(samples, "library_db_pool_connections") >= 1
        in_use = total(samples, "library_db_pool_connections_in_use")
        assert 0 <= in_use <= total(samples, "library_db_pool_connections")
    else:
        assert total(samples, "library_db_pool_connections") == 0


def test_one_scrape_sums_every_worker(
    server_factory: Callable[..., ServerProcess], collector: OtlpCollector
) -> None:
    workers = 2
    server = server_factory(args=("--workers", str(workers)), env=telemetry_env(collector))
    wait_until(lambda: len(workers_of(server.pid)) == workers, 30, f"{workers} workers")
    url = metrics_url(server.log_path)
    with LibraryServiceClientSync(server.url) as client:
        book = add_book(client)
    calls = 12
    for _ in range(calls):
        # A connection each, so the kernel spreads the calls over the workers.
        with LibraryServiceClientSync(server.url, protocol=ProtocolType.CONNECT) as own:
            get_books(own, book.id, 1)
    counted = scrape_until(
        url,
        lambda now: total(now, "library_rpc_calls_total", method=GET_BOOK) >= calls,
        f"{calls} calls counted",
    )
    assert total(counted, "library_rpc_calls_total", method=GET_BOOK) == calls

    def scraped_pids() -> set[str]:
        samples = scrape(url)
        return {labels["pid"] for name, labels, _ in samples if name == "process_cpu_seconds_total"}

    # A worker shows up once it has started its app (it may not have served yet).
    wait_until(
        lambda: scraped_pids() == {str(pid) for pid in workers_of(server.pid)},
        30,
        "process metrics of each worker",
    )

    # A worker that dies leaves its counts but not its in-flight gauges.
    killed = workers_of(server.pid)[0]
    os.kill(killed, signal.SIGKILL)
    wait_until(
        lambda: str(killed) not in {labels.get("pid") for _, labels, _ in scrape(url)},
        30,
        "the dead worker to leave the scrape",
    )
    counted = scrape_until(
        url,
        lambda now: total(now, "library_rpc_calls_total", method=GET_BOOK) >= calls,
        f"{calls} calls counted",
    )
    assert total(counted, "library_rpc_calls_total", method=GET_BOOK) == calls


def test_http2_server_counts_grpc(observed_h2: Http2Server) -> None:
    url = metrics_url(observed_h2.log_path)
    before = total(scrape(url), "library_rpc_calls_total", protocol="grpc", code="not_found")
    with grpc_client(observed_h2) as client, pytest.raises(ConnectError) as caught:
        client.get_book(pb.GetBookRequest(id=10**12))
    assert caught.value.code == Code.NOT_FOUND

    def not_found(samples: Samples) -> float:
        return total(samples, "library_rpc_calls_total", protocol="grpc", code="not_found")

    after = scrape_until(url, lambda now: not_found(now) > before, "the call to be counted")
    assert not_found(after) - before == 1


def test_dashboard_uses_metrics_the_server_has(observed: ServerProcess) -> None:
    with LibraryServiceClientSync(observed.url) as client:
        get_books(client, add_book(client).id, 1)
    shown = {name for name, _, _ in scrape(metrics_url(observed.log_path))}
    dashboard = (Path(__file__).resolve().parents[2] / "deploy/grafana/library.json").read_text()
    json.loads(dashboard)  # valid JSON, so Grafana can import it
    used = set(re.findall(r"\b(?:library|process)_[a-z_]+", dashboard))
    assert used, "the dashboard queries no metric"
    assert used <= shown
