"""The access log: a line per call with every field, JSON or text, and never a token or a body."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.conftest import ADMIN_TOKEN
from tests.ops.conftest import grpc_client
from tests.support.access_lines import FIELDS
from tests.support.clients import LIBRARIAN, bearer, present
from tests.support.data import isbn13
from tests.support.server import (
    Http2Server,
    LibraryServer,
    ServerFactory,
    ServerProcess,
    wait_until,
)

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


@contextmanager
def _client(server: LibraryServer) -> Iterator[LibraryServiceClientSync]:
    if isinstance(server, Http2Server):
        with grpc_client(server) as client:
            yield client
    else:
        with LibraryServiceClientSync(server.url) as client:
            yield client


def _traced_get_books(server: LibraryServer, count: int) -> list[str]:
    """``count`` GetBook calls one after the other, each in a new trace; their trace ids."""
    sent: list[str] = []
    with _client(server) as client:
        for _ in range(count):
            trace = secrets.token_hex(16)
            sent.append(trace)
            with pytest.raises(ConnectError):
                client.get_book(
                    pb.GetBookRequest(id=10**12 + 1),
                    headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
                )
    return sent


@pytest.mark.parametrize("kind", [ServerProcess, Http2Server])
def test_every_line_written_in_order_by_the_stop(
    servers: ServerFactory, kind: type[LibraryServer]
) -> None:
    """Lines are written a loop pass at a time: none is lost or cut, each client's in order."""
    server = servers.start(kind, env={"LIBRARY_LOG_LEVEL": "info", "LIBRARY_LOG_FORMAT": "json"})
    with ThreadPoolExecutor(4) as pool:
        clients = list(pool.map(_traced_get_books, [server] * 4, [150] * 4))
    assert server.stop() == 0
    lines = json_lines(server.log_path)
    for line in lines:
        assert list(line) == FIELDS
    logged = [line["trace_id"] for line in lines]
    for sent in clients:
        assert [trace for trace in logged if trace in sent] == sent


def test_a_lone_call_is_logged_at_once(server_factory: Callable[..., ServerProcess]) -> None:
    """With no more traffic to push it out, a call's line is written within the loop's pass."""
    server = server_factory(env={"LIBRARY_LOG_LEVEL": "info", "LIBRARY_LOG_FORMAT": "text"})
    [trace] = _traced_get_books(server, 1)
    answered = time.monotonic()
    wait_until(lambda: f"trace_id={trace}" in server.log_text(), 5, "the call's access line")
    assert time.monotonic() - answered < 2.0
    line = next(line for line in server.log_text().splitlines() if trace in line)
    assert line.startswith("time=")
    assert " code=not_found " in line
