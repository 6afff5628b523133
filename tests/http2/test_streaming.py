"""Full-duplex SearchBooks, cancelled watches freeing their server task, server-side deadlines."""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType

from server.gen.library.v1 import library_pb as connect_pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.http2.stubs import GrpcStubs
from tests.support.data import isbn13
from tests.support.server import Http2Server, wait_until

WATCH_ENDED = re.compile(
    r"procedure=/library\.v1\.LibraryService/WatchBooks \S+ \S+ duration_ms=([\d.]+)"
)
TIMEOUT = 10


def watches_ended(server: Http2Server) -> list[float]:
    """How long each finished WatchBooks call lasted, from the server's access log."""
    return [float(millis) / 1000 for millis in WATCH_ENDED.findall(server.log_text())]


def test_search_is_full_duplex(
    library: Any, grpc_stubs: GrpcStubs, new_book: Callable[..., Any]
) -> None:
    pb = grpc_stubs.pb
    first, second = f"Alpha{isbn13()}", f"Beta{isbn13()}"
    new_book(title=first)
    new_book(author=second)
    outbox: queue.Queue[Any] = queue.Queue()
    done = object()

    def requests() -> Iterator[Any]:
        while (item := outbox.get(timeout=TIMEOUT)) is not done:
            yield item

    answers = library.SearchBooks(requests(), timeout=TIMEOUT)
    outbox.put(pb.SearchBooksRequest(query=first))
    # The second query goes out only once the first answer is in: a
    # half-duplex transport would wait for the end of the requests and hang.
    answer = next(answers)
    assert (answer.query, [b.title for b in answer.books]) == (first, [first])
    outbox.put(pb.SearchBooksRequest(query=second.upper(), limit=5))
    answer = next(answers)
    assert (answer.query, [b.author for b in answer.books]) == (second.upper(), [second])
    outbox.put(done)
    assert list(answers) == []
    assert answers.code() == grpc.StatusCode.OK


def test_cancelled_watch_frees_its_server_task(
    h2_server: Http2Server, library: Any, grpc_stubs: GrpcStubs, new_book: Callable[..., Any]
) -> None:
    new_book()
    ended_before = len(watches_ended(h2_server))
    stream = library.WatchBooks(grpc_stubs.pb.WatchBooksRequest(since_revision=0), timeout=60)
    next(stream)  # The server is streaming to us now, and would go on for a minute.
    assert len(watches_ended(h2_server)) == ended_before
    cancelled_at = time.monotonic()
    stream.cancel()
    wait_until(
        lambda: len(watches_ended(h2_server)) > ended_before, 5, "the server to end the watch"
    )
    assert time.monotonic() - cancelled_at < 5


@pytest.mark.parametrize(
    ("protocol", "header"),
    [
        (ProtocolType.GRPC, ("grpc-timeout", "300m")),
        (ProtocolType.CONNECT, ("connect-timeout-ms", "300")),
    ],
)
def test_server_enforces_deadline_headers(
    h2_server: Http2Server,
    h2_client: Callable[..., LibraryServiceClientSync],
    protocol: ProtocolType,
    header: tuple[str, str],
) -> None:
    # The client only sends the header; ending the call is up to the server.
    client = h2_client(protocol)
    ended_before = len(watches_ended(h2_server))
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        for _ in client.watch_books(
            connect_pb.WatchBooksRequest(since_revision=0), headers=dict([header])
        ):
            pass
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    assert 0.3 <= time.monotonic() - started < 5
    wait_until(lambda: len(watches_ended(h2_server)) > ended_before, 5, "the watch to end")


def test_grpc_client_deadline(library: Any, grpc_stubs: GrpcStubs) -> None:
    stream = library.WatchBooks(grpc_stubs.pb.WatchBooksRequest(since_revision=0), timeout=0.3)
    with pytest.raises(grpc.RpcError) as caught:
        list(stream)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_malformed_deadline_is_invalid_argument(
    h2_client: Callable[..., LibraryServiceClientSync],
) -> None:
    client = h2_client(ProtocolType.CONNECT)
    with pytest.raises(ConnectError) as caught:
        client.get_book(connect_pb.GetBookRequest(id=1), headers={"connect-timeout-ms": "soon"})
    assert caught.value.code == Code.INVALID_ARGUMENT
