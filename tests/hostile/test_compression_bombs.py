"""A small compressed body that inflates past the 4 MiB message bound is refused, unread.

Whatever the encoding, the server stops inflating at the bound: the answer is
RESOURCE_EXHAUSTED, and its memory, at its peak, does not grow by the inflated size.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from functools import cache

import brotli
import pytest
import zstandard

from tests.hostile.raw import SERVICE, Target, envelope, peak_growth, send, stream_error_code

INFLATED = 256 * 1024 * 1024
# Far below the inflated size: the server may hold a bounded message and buffers, not it.
GROWTH = 64 * 1024 * 1024


def _body() -> Iterator[bytes]:
    """A JSON GetBook request of ``INFLATED`` bytes, in pieces, never whole in memory."""
    yield b'{"id": 1, "padding": "'
    piece = b"x" * (1024 * 1024)
    for _ in range(INFLATED // len(piece)):
        yield piece
    yield b'"}'


def _gzip() -> bytes:
    # wbits 31: the gzip container, which is what content-encoding gzip means.
    encoder = zlib.compressobj(1, zlib.DEFLATED, 31)
    return b"".join(encoder.compress(piece) for piece in _body()) + encoder.flush()


def _br() -> bytes:
    encoder = brotli.Compressor(quality=1)
    compressed: bytes = b"".join(encoder.process(piece) for piece in _body()) + encoder.finish()
    return compressed


def _zstd() -> bytes:
    encoder = zstandard.ZstdCompressor(level=1).compressobj()
    return b"".join(encoder.compress(piece) for piece in _body()) + encoder.flush()


ENCODERS: dict[str, Callable[[], bytes]] = {"gzip": _gzip, "br": _br, "zstd": _zstd}


@cache
def bomb(encoding: str) -> bytes:
    """The inflating body in ``encoding``, made once and only by the tests that send it."""
    return ENCODERS[encoding]()


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_a_unary_bomb_is_resource_exhausted(target: Target, encoding: str) -> None:
    body = bomb(encoding)
    headers = {"content-type": "application/json", "content-encoding": encoding}
    with peak_growth(target.pid) as growth:
        reply = send(target, f"{SERVICE}/GetBook", body, headers)
    assert reply.status == 429, reply
    assert reply.json()["code"] == "resource_exhausted"
    assert growth() < GROWTH
    assert target.alive()


def test_a_streamed_bomb_is_resource_exhausted(target: Target) -> None:
    headers = {
        "content-type": "application/connect+json",
        "connect-content-encoding": "gzip",
    }
    body = envelope(bomb("gzip"), flags=0x01)
    with peak_growth(target.pid) as growth:
        reply = send(target, f"{SERVICE}/SearchBooks", body, headers)
    assert stream_error_code(reply) == "resource_exhausted"
    assert growth() < GROWTH
    assert target.alive()
