"""--http2: an idle WatchBooks stream outlives the stream idle timeout; other streams do not."""

from __future__ import annotations

import queue
import time
from typing import Any

import grpc
import pytest

from tests.hostile.conftest import Start
from tests.http2.stubs import GrpcStubs
from tests.support.clients import LIBRARIAN
from tests.support.data import isbn13

IDLE_TIMEOUT = 1
DEADLINE = 30


def test_a_quiet_watch_stays_open_past_the_stream_idle_timeout(
    start_target: Start, grpc_stubs: GrpcStubs
) -> None:
    target = start_target("http2", {"LIBRARY_STREAM_IDLE_TIMEOUT": str(IDLE_TIMEOUT)})
    pb = grpc_stubs.pb
    with grpc.insecure_channel(f"{target.host}:{target.port}") as channel:
        library = grpc_stubs.library(channel)
        # A fresh catalogue: the snapshot is empty, so nothing crosses this stream.
        watch = library.WatchBooks(pb.WatchBooksRequest(since_revision=0), timeout=DEADLINE)
        # A search that never sends a query is idle too, and opened later: Envoy
        # resetting it proves the watch has been idle past the timeout as well.
        nothing: queue.Queue[Any] = queue.Queue()
        started = time.monotonic()
        search = library.SearchBooks(iter(nothing.get, None), timeout=DEADLINE)
        with pytest.raises(grpc.RpcError) as reset:
            next(search)
        nothing.put(None)
        assert reset.value.code() != grpc.StatusCode.DEADLINE_EXCEEDED
        assert IDLE_TIMEOUT * 0.9 <= time.monotonic() - started < DEADLINE

        request = pb.CreateBookRequest(
            title="Quiet", author="A", isbn=isbn13(), published_year=2001
        )
        auth = (("authorization", LIBRARIAN["authorization"]),)
        created = library.CreateBook(request, metadata=auth, timeout=DEADLINE).book
        event = next(watch).event
        assert (event.type, event.book.id) == (pb.EVENT_TYPE_CREATED, created.id)
        watch.cancel()
