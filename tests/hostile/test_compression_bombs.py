"""A small compressed body that inflates past the 4 MiB message bound is refused, unread.

Whatever the encoding, the server stops inflating at the bound: the answer is
RESOURCE_EXHAUSTED, and its memory does not grow by the inflated size.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable

import brotli
import pytest
import zstandard

from tests.hostile.raw import SERVICE, Target, envelope, rss_bytes, send, stream_error_code

INFLATED = 256 * 1024 * 1024
BODY = b'{"id": 1, "padding": "' + b"x" * INFLATED + b'"}'
# Far below the inflated size: the server may hold a bounded message and buffers, not it.
GROWTH = 64 * 1024 * 1024
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, 1),
    "br": lambda data: brotli.compress(data, quality=1),
    "zstd": lambda data: zstandard.ZstdCompressor(level=1).compress(data),
}
BOMBS = {name: encode(BODY) for name, encode in ENCODERS.items()}


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_a_unary_bomb_is_resource_exhausted(target: Target, encoding: str) -> None:
    before = rss_bytes(target.pid)
    headers = {"content-type": "application/json", "content-encoding": encoding}
    reply = send(target, f"{SERVICE}/GetBook", BOMBS[encoding], headers)
    assert reply.status == 429, reply
    assert reply.json()["code"] == "resource_exhausted"
    assert rss_bytes(target.pid) - before < GROWTH
    assert target.alive()


def test_a_streamed_bomb_is_resource_exhausted(target: Target) -> None:
    before = rss_bytes(target.pid)
    headers = {
        "content-type": "application/connect+json",
        "connect-content-encoding": "gzip",
    }
    body = envelope(BOMBS["gzip"], flags=0x01)
    reply = send(target, f"{SERVICE}/SearchBooks", body, headers)
    assert stream_error_code(reply) == "resource_exhausted"
    assert rss_bytes(target.pid) - before < GROWTH
    assert target.alive()
