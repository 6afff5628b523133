"""The access log: a line per call with every field, JSON or text, and never a token or a body."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.conftest import ADMIN_TOKEN
from tests.ops.conftest import grpc_client
from tests.support.clients import LIBRARIAN, bearer, present
from tests.support.data import isbn13
from tests.support.server import Http2Server, ServerProcess, wait_until

FIELDS = [
    "time",
    "procedure",
    "protocol",
    "code",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "peer",
    "trace_id",
]
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def json_lines(log: Path) -> list[dict[str, Any]]:
    """The access log's lines among everything the server wrote."""
    lines = log.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith('{"time"')]


def line_where(log: Path, what: str, **fields: Any) -> dict[str, Any]:
    """The newest JSON access line with these field values, once it is written."""
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        found[:] = [e for e in json_lines(log) if fields.items() <= e.items()]
        return bool(found)

    # The line is written once the response has left, so it may trail the client a little.
    wait_until(logged, 5, f"the access line of {what}")
    return found[-1]


def test_json_line_per_call_without_secrets(observed: ServerProcess) -> None:
    secret_title = f"Body {isbn13()}"
    with LibraryServiceClientSync(observed.url) as client:
        created = client.create_member(
            pb.CreateMemberRequest(name=f"logged-{isbn13()}", role=pb.Role.MEMBER),
            headers=LIBRARIAN,
        )
        member_token = created.token
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        traceparent = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
        book = present(
            client.create_book(
                pb.CreateBookRequest(
                    title=secret_title, author="A", isbn=isbn13(), published_year=2001
                ),
                headers={**LIBRARIAN, **traceparent},
            ).book
        )
        client.who_am_i(pb.WhoAmIRequest(), headers=bearer(member_token))
        with pytest.raises(ConnectError):
            client.delete_book(pb.DeleteBookRequest(id=book.id), headers=bearer(member_token))

    line = line_where(observed.log_path, "CreateBook", trace_id=trace)
    assert list(line) == FIELDS
    assert _TIME.fullmatch(line["time"])
    assert line["procedure"] == "/library.v1.LibraryService/CreateBook"
    assert (line["protocol"], line["code"]) == ("connect", "ok")
    assert line["duration_ms"] > 0
    assert line["bytes_in"] > len(secret_title)
    assert line["bytes_out"] > 0
    assert line["peer"].startswith("127.0.0.1:")
    procedure = "/library.v1.LibraryService/DeleteBook"
    line_where(observed.log_path, "DeleteBook", procedure=procedure, code="permission_denied")

    text = observed.log_path.read_text(errors="replace")
    for secret in (ADMIN_TOKEN, member_token, secret_title):
        assert secret not in text


def test_text_line_for_a_grpc_call(observed_h2: Http2Server) -> None:
    with grpc_client(observed_h2) as client, pytest.raises(ConnectError):
        client.get_book(pb.GetBookRequest(id=10**12 + 7), headers=LIBRARIAN)
    line = re.compile(
        r"time=\S+Z procedure=/library\.v1\.LibraryService/GetBook protocol=grpc"
        r" code=not_found duration_ms=[\d.]+ bytes_in=\d+ bytes_out=0 peer=127\.0\.0\.1:\d+"
        r" trace_id=[0-9a-f]{32}$",
        re.MULTILINE,
    )
    wait_until(lambda: line.search(observed_h2.log_text()), 5, "the access line")
    assert ADMIN_TOKEN not in observed_h2.log_text()
