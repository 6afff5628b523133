"""Server spans on every protocol and kind of call, continuing the client's trace."""

from __future__ import annotations

import secrets
import urllib.request

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.ops.collector import CLIENT, STATUS_ERROR, STATUS_UNSET, OtlpCollector, ReceivedSpan
from tests.ops.conftest import Traced
from tests.support.clients import LIBRARIAN, bearer, present
from tests.support.data import isbn13
from tests.support.server import ServerProcess, wait_until

SERVICE = "library.v1.LibraryService"
GRPC_STATUS = {"ok": 0, "not_found": 5, "out_of_range": 11, "deadline_exceeded": 4}


def check_server_span(
    span: ReceivedSpan, traced: Traced, parent: str, method: str, code: str
) -> None:
    """The RPC conventions' attributes, the client's span as parent, the status by its code."""
    assert span.name == f"{SERVICE}/{method}"
    assert span.parent_span_id == parent
    attributes = span.attributes
    assert attributes["rpc.system.name"] == "connectrpc"
    assert attributes["rpc.system"] == ("connect_rpc" if traced.protocol == "connect" else "grpc")
    assert attributes["rpc.service"] == SERVICE
    assert attributes["rpc.method"] == f"{SERVICE}/{method}"
    assert attributes["connectrpc.protocol"] == traced.protocol
    assert attributes["rpc.response.status_code"] == code
    if traced.protocol != "connect":
        assert attributes["rpc.grpc.status_code"] == GRPC_STATUS[code]
    assert attributes["http.request.body.size"] > 0
    # A gRPC error comes in a trailers-only response, without a body.
    assert attributes["http.response.body.size"] > 0 or code != "ok"
    assert attributes["client.address"] == "127.0.0.1"
    server_fault = code == "deadline_exceeded"
    assert span.status == (STATUS_ERROR if server_fault else STATUS_UNSET)


def storage_spans(collector: OtlpCollector, server: ReceivedSpan) -> list[ReceivedSpan]:
    """The server span's children: its storage calls."""
    children = [
        s for s in collector.in_trace(server.trace_id) if s.parent_span_id == server.span_id
    ]
    assert all(s.kind == CLIENT for s in children)
    assert {s.attributes["db.system"] for s in children} <= {"sqlite", "postgresql"}
    return children


def new_book(traced: Traced) -> pb.Book:
    request = pb.CreateBookRequest(title="Traced", author="A", isbn=isbn13(), published_year=2001)
    return present(traced.client.create_book(request, headers=LIBRARIAN).book)


def test_unary_call(traced: Traced, collector: OtlpCollector) -> None:
    book = new_book(traced)
    trace_id, parent, headers = traced.new_trace()
    traced.client.get_book(pb.GetBookRequest(id=book.id), headers=headers)
    span = collector.server_span(trace_id)
    check_server_span(span, traced, parent, "GetBook", "ok")
    (read,) = storage_spans(collector, span)
    assert (read.name, read.attributes["db.operation.name"]) == ("get_book", "get_book")


def test_cached_unary_call(traced: Traced, collector: OtlpCollector) -> None:
    book = new_book(traced)
    traced.client.get_book(pb.GetBookRequest(id=book.id))  # reads it into the book cache
    server_spans: list[tuple[ReceivedSpan, str]] = []

    def answered_from_the_cache() -> bool:
        # The cache serves once its process has applied every write it knows of.
        trace_id, parent, headers = traced.new_trace()
        traced.client.get_book(pb.GetBookRequest(id=book.id), headers=headers)
        span = collector.server_span(trace_id)
        server_spans.append((span, parent))
        return not storage_spans(collector, span)

    wait_until(answered_from_the_cache, 10, "a GetBook with no storage span")
    span, parent = server_spans[-1]
    check_server_span(span, traced, parent, "GetBook", "ok")


def test_unary_error(traced: Traced, collector: OtlpCollector) -> None:
    trace_id, parent, headers = traced.new_trace()
    with pytest.raises(ConnectError) as caught:
        traced.client.get_book(pb.GetBookRequest(id=10**12), headers=headers)
    assert caught.value.code == Code.NOT_FOUND
    span = collector.server_span(trace_id)
    check_server_span(span, traced, parent, "GetBook", "not_found")
    assert span.attributes["error.type"] == "ConnectError"


def test_server_stream_error(traced: Traced, collector: OtlpCollector) -> None:
    trace_id, parent, headers = traced.new_trace()
    with pytest.raises(ConnectError) as caught:
        list(
            traced.client.watch_books(pb.WatchBooksRequest(since_revision=10**12), headers=headers)
        )
    assert caught.value.code == Code.OUT_OF_RANGE
    check_server_span(collector.server_span(trace_id), traced, parent, "WatchBooks", "out_of_range")


# The deadline as a header only, with no client-side timer: a client giving up at
# the same moment would close the stream first, and the server would see CANCELED.
_DEADLINE_HEADER = {"connect": ("connect-timeout-ms", "300")}
_GRPC_DEADLINE_HEADER = ("grpc-timeout", "300m")


def test_server_stream_deadline(traced: Traced, collector: OtlpCollector) -> None:
    new_book(traced)
    trace_id, parent, headers = traced.new_trace()
    name, value = _DEADLINE_HEADER.get(traced.protocol, _GRPC_DEADLINE_HEADER)
    with pytest.raises(ConnectError) as caught:
        list(
            traced.client.watch_books(
                pb.WatchBooksRequest(since_revision=0), headers={**headers, name: value}
            )
        )
    assert caught.value.code == Code.DEADLINE_EXCEEDED
    span = collector.server_span(trace_id)
    check_server_span(span, traced, parent, "WatchBooks", "deadline_exceeded")
    assert "snapshot_pages" in {s.name for s in storage_spans(collector, span)}


def unused_librarian(traced: Traced) -> dict[str, str]:
    """Headers signing in with a new librarian's token: no call has looked it up yet."""
    created = traced.client.create_member(
        pb.CreateMemberRequest(name=f"Traced {secrets.token_hex(4)}", role=pb.Role.LIBRARIAN),
        headers=LIBRARIAN,
    )
    return bearer(created.token)


def test_client_stream(traced: Traced, collector: OtlpCollector) -> None:
    # A token used in the last second is signed in from the server's token cache.
    librarian = unused_librarian(traced)
    trace_id, parent, headers = traced.new_trace()
    items = [pb.ImportBooksRequest(title="Imported", author="A", isbn=isbn13()) for _ in range(2)]
    result = traced.client.import_books(iter(items), headers={**librarian, **headers})
    assert result.created_count == 2
    span = collector.server_span(trace_id)
    check_server_span(span, traced, parent, "ImportBooks", "ok")
    names = [s.name for s in storage_spans(collector, span)]
    assert names.count("create_book") == 2
    assert "member_by_token_hash" in names  # the sign-in is part of the call


def test_bidi_stream(traced: Traced, collector: OtlpCollector) -> None:
    trace_id, parent, headers = traced.new_trace()
    queries = [pb.SearchBooksRequest(query=q) for q in ("Traced", "Imported")]
    answers = list(traced.client.search_books(iter(queries), headers=headers))
    assert [a.query for a in answers] == ["Traced", "Imported"]
    span = collector.server_span(trace_id)
    check_server_span(span, traced, parent, "SearchBooks", "ok")
    assert len(storage_spans(collector, span)) >= 2


def test_health_checks_make_no_span(observed: ServerProcess, collector: OtlpCollector) -> None:
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    check = urllib.request.Request(
        f"{observed.url}/grpc.health.v1.Health/Check",
        data=b"{}",
        headers={"content-type": "application/json", **headers},
    )
    with urllib.request.urlopen(check, timeout=5) as response:
        assert response.status == 200
    # Spans are exported in the order they end: once this one is in, the check's would be too.
    with LibraryServiceClientSync(observed.url) as client, pytest.raises(ConnectError):
        client.get_book(pb.GetBookRequest(id=10**12), headers=headers)
    assert collector.server_span(trace_id).name == f"{SERVICE}/GetBook"
