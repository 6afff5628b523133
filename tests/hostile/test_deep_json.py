"""Deeply nested JSON is refused on every path, before protobuf-py's native parser sees it.

20,000 nested arrays used to kill the process with SIGSEGV (at ~14,000 levels on
uvicorn, ~3,500 inside Envoy): each test proves the server is still up and answering.
"""

from __future__ import annotations

import base64
import gzip
from urllib.parse import quote

import pytest

from server.gen.library.v1 import library_connect
from tests.conftest import ADMIN_TOKEN
from tests.hostile.raw import (
    JSON,
    SERVICE,
    Target,
    envelope,
    get_book_answers,
    send,
    stream_error_code,
)

DEEP = b"[" * 20_000 + b"]" * 20_000
DEEP_IN_FIELD = b'{"title": ' + DEEP + b"}"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
METHODS = library_connect.LibraryService.desc().methods


def _survived(target: Target) -> None:
    assert target.alive(), "the server died"
    get_book_answers(target, within=2.0)


@pytest.mark.parametrize("body", [DEEP, DEEP_IN_FIELD], ids=["bare", "in-a-field"])
def test_unary_post_every_method(target: Target, body: bytes) -> None:
    for method in METHODS:
        if method.name in ("ImportBooks", "SearchBooks", "WatchBooks"):
            continue
        reply = send(target, f"{SERVICE}/{method.name}", body, {**JSON, **AUTH})
        assert reply.status == 400, (method.name, reply)
        assert reply.json()["code"] == "invalid_argument", (method.name, reply)
        assert "nested more than 64 levels" in str(reply.json()["message"])
    _survived(target)


def test_get_query_message(target: Target) -> None:
    packed = base64.urlsafe_b64encode(gzip.compress(DEEP)).decode()
    path = f"{SERVICE}/GetBook?encoding=json&base64=1&compression=gzip&message={quote(packed)}"
    reply = send(target, path, method="GET")
    assert reply.status == 400, reply
    assert reply.json()["code"] == "invalid_argument"
    _survived(target)


@pytest.mark.parametrize("content_type", ["application/connect+json", "application/grpc-web+json"])
@pytest.mark.parametrize("method", ["WatchBooks", "ImportBooks", "SearchBooks"])
def test_stream_envelopes(target: Target, content_type: str, method: str) -> None:
    headers = {"content-type": content_type, **AUTH}
    reply = send(target, f"{SERVICE}/{method}", envelope(DEEP), headers)
    assert stream_error_code(reply) == "invalid_argument", reply
    _survived(target)


def test_health_check(target: Target) -> None:
    reply = send(target, "/grpc.health.v1.Health/Check", DEEP, JSON)
    assert reply.status == 400, reply
    _survived(target)


def test_deep_binary_is_refused_by_protobuf_itself(target: Target) -> None:
    # 100,000 nested groups: protobuf-py's binary reader stops at depth 100.
    body = b"\x0b" * 100_000 + b"\x0c" * 100_000
    reply = send(target, f"{SERVICE}/GetBook", body, {"content-type": "application/proto"})
    assert reply.status == 400, reply
    _survived(target)
