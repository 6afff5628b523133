"""Plain HTTP against the service: Connect GET, and bad requests answered precisely, never 500."""

from __future__ import annotations

import base64
import json
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPConnection

import pytest

from server.gen.library.v1 import library_pb as pb
from tests.conftest import ADMIN_TOKEN
from tests.support.clients import present
from tests.support.data import isbn13
from tests.support.server import ServerProcess

SERVICE = "/library.v1.LibraryService"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Linux delays an ACK by at least 40 ms; a call on a warm connection takes ~1 ms.
DELAYED_ACK_SECONDS = 0.04


@dataclass(frozen=True)
class Reply:
    """An HTTP response, read whole."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> dict[str, object]:
        """The body as a JSON object."""
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


def http(
    server: ServerProcess,
    path: str,
    body: bytes | None = None,
    *,
    content_type: str = "application/json",
    method: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One plain HTTP request; error statuses are returned, not raised."""
    all_headers = dict(headers or {})
    if body is not None:
        all_headers["content-type"] = content_type
    request = urllib.request.Request(
        server.url + path, data=body, headers=all_headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Reply(response.status, response.headers.get("content-type", ""), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers.get("content-type", ""), error.read())


def get_url(method: str, message: str, **params: str) -> str:
    """A Connect GET URL for a JSON message."""
    query = urllib.parse.urlencode(
        {"connect": "v1", "encoding": "json", "message": message, **params}
    )
    return f"{SERVICE}/{method}?{query}"


@pytest.fixture
def book_id(server: ServerProcess) -> int:
    """A fresh book, created with plain HTTP."""
    body = json.dumps({"title": "Raw", "author": "Curl", "isbn": isbn13(), "publishedYear": 1970})
    reply = http(
        server,
        f"{SERVICE}/CreateBook",
        body.encode(),
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert reply.status == 200, reply.body
    return int(reply.json()["book"]["id"])  # type: ignore[index]


def test_get_book_by_http_get(server: ServerProcess, book_id: int) -> None:
    reply = http(server, get_url("GetBook", json.dumps({"id": book_id})))
    assert reply.status == 200
    assert reply.content_type == "application/json"
    book = reply.json()["book"]
    assert isinstance(book, dict)
    assert (book["id"], book["title"], book["publishedYear"], book["available"]) == (
        str(book_id),
        "Raw",
        1970,
        True,
    )


def test_get_with_binary_message(server: ServerProcess, book_id: int) -> None:
    message = (
        base64.urlsafe_b64encode(pb.GetBookRequest(id=book_id).to_binary()).decode().rstrip("=")
    )
    url = f"{SERVICE}/GetBook?connect=v1&encoding=proto&base64=1&message={message}"
    reply = http(server, url)
    assert reply.status == 200
    assert reply.content_type == "application/proto"
    assert present(pb.GetBookResponse.from_binary(reply.body).book).id == book_id


def test_every_side_effect_free_method_answers_get(server: ServerProcess, book_id: int) -> None:
    signed_in = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    list_books = http(server, get_url("ListBooks", json.dumps({"pageSize": 1})))
    list_loans = http(server, get_url("ListLoans", "{}"), headers=signed_in)
    who_am_i = http(server, get_url("WhoAmI", "{}"), headers=signed_in)
    anonymous = http(server, get_url("WhoAmI", "{}"))
    assert list_books.status == 200
    assert len(list_books.json()["books"]) == 1  # type: ignore[arg-type]
    assert list_loans.status == 200
    assert who_am_i.json()["member"]["role"] == "ROLE_LIBRARIAN"  # type: ignore[index]
    assert (anonymous.status, anonymous.json()["code"]) == (401, "unauthenticated")


def test_get_of_a_method_with_side_effects_is_refused(server: ServerProcess) -> None:
    reply = http(server, get_url("CreateBook", "{}"))
    assert reply.status == 405


def test_not_found_over_http(server: ServerProcess) -> None:
    reply = http(server, get_url("GetBook", json.dumps({"id": 10**12})))
    assert reply.status == 404
    assert reply.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status", "code"),
    [
        (b'{"id": ', "application/json", {}, 400, "invalid_argument"),
        (b'{"id": "twelve"}', "application/json", {}, 400, "invalid_argument"),
        (b"[1, 2]", "application/json", {}, 400, "invalid_argument"),
        (b"\xff\xff\xff", "application/proto", {}, 400, "invalid_argument"),
        (
            b'{"id": 1}',
            "application/json",
            {"connect-protocol-version": "2"},
            400,
            "invalid_argument",
        ),
        (b'{"id": 1}', "application/json", {"connect-timeout-ms": "soon"}, 400, "invalid_argument"),
        (b'{"id": 1}', "application/json", {"content-encoding": "x-unknown"}, 501, "unimplemented"),
        (b'{"id": 1}', "text/plain", {}, 415, None),
        (b'{"id": 1}', "application/xml", {}, 415, None),
    ],
    ids=[
        "truncated json",
        "wrong field type",
        "json array",
        "garbage protobuf",
        "protocol version",
        "timeout header",
        "unknown compression",
        "text/plain",
        "xml",
    ],
)
def test_malformed_requests(
    server: ServerProcess,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    reply = http(server, f"{SERVICE}/GetBook", body, content_type=content_type, headers=headers)
    assert reply.status == status, reply.body
    if code is not None:
        assert reply.json()["code"] == code


def test_malformed_get_message(server: ServerProcess) -> None:
    reply = http(server, get_url("GetBook", '{"id": 1'))
    assert reply.status == 400
    assert reply.json()["code"] == "invalid_argument"


def test_oversized_message_is_resource_exhausted(server: ServerProcess) -> None:
    body = json.dumps({"id": 1, "padding": "x" * MAX_MESSAGE_BYTES}).encode()
    reply = http(server, f"{SERVICE}/GetBook", body)
    assert reply.status == 429
    assert reply.json()["code"] == "resource_exhausted"


@pytest.mark.parametrize(
    "path", [f"{SERVICE}/NoSuchMethod", "/library.v1.NoSuchService/GetBook", f"{SERVICE}/", "/"]
)
def test_unknown_method_is_not_found(server: ServerProcess, path: str) -> None:
    assert http(server, path, b"{}").status == 404


def test_unknown_page_is_not_found(server: ServerProcess) -> None:
    assert http(server, "/no/such/page.html").status == 404


def test_wrong_http_method_is_refused(server: ServerProcess) -> None:
    assert http(server, f"{SERVICE}/GetBook", b"{}", method="PUT").status == 405


def test_grpc_over_http1_is_refused_with_a_hint(server: ServerProcess) -> None:
    frame = b"\x00\x00\x00\x00\x02\x08\x01"
    reply = http(server, f"{SERVICE}/GetBook", frame, content_type="application/grpc")
    assert reply.status == 415
    assert b"--http2" in reply.body


def test_bad_page_token_over_http(server: ServerProcess) -> None:
    reply = http(server, f"{SERVICE}/ListBooks", json.dumps({"pageToken": "forged"}).encode())
    assert reply.status == 400
    assert reply.json()["code"] == "invalid_argument"
    assert "page_token" in str(reply.json()["message"])


def test_responses_do_not_wait_for_delayed_acks(server: ServerProcess, book_id: int) -> None:
    # With Nagle on, the response body waits for the client to ACK the headers.
    connection = HTTPConnection("127.0.0.1", server.port, timeout=10)
    latencies = []
    try:
        for _ in range(15):
            started = time.monotonic()
            connection.request(
                "POST",
                f"{SERVICE}/GetBook",
                body=json.dumps({"id": book_id}).encode(),
                headers={"content-type": "application/json"},
            )
            response = connection.getresponse()
            response.read()
            latencies.append(time.monotonic() - started)
            assert response.status == 200
    finally:
        connection.close()
    assert statistics.median(latencies) < DELAYED_ACK_SECONDS / 2
