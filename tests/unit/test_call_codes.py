"""A call's code as the client reads it, for wire shapes the integration tests rarely produce."""

from __future__ import annotations

import gzip
import json
import struct

import pytest
from connectrpc.compression.gzip import GzipCompression

from server.app.telemetry.calls import Call
from server.app.telemetry.codes import call_code, protocol_of


def call(protocol: str, status: int, last_body: bytes = b"", **fields: object) -> Call:
    made = Call(procedure="/p.S/M", protocol=protocol, peer="-", traceparent=None)
    made.http_status = status
    made.last_body = last_body
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def envelope(flags: int, data: bytes) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


ABORTED_END = json.dumps({"error": {"code": "aborted"}}).encode()
UNAUTHENTICATED = b"grpc-status: 16\r\ngrpc-message: who\r\n"


@pytest.mark.parametrize(
    ("content_type", "protocol"),
    [
        (None, "connect"),
        (b"application/json", "connect"),
        (b"application/connect+proto", "connect"),
        (b"application/grpc", "grpc"),
        (b"application/grpc+proto", "grpc"),
        (b"application/grpc-web+proto", "grpc-web"),
        (b"application/grpc-web-text", "grpc-web"),
    ],
)
def test_protocol_by_content_type(content_type: bytes | None, protocol: str) -> None:
    assert protocol_of(content_type) == protocol


@pytest.mark.parametrize(
    ("made", "code"),
    [
        (call("connect", 200, b'{"book": {}}'), "ok"),
        (call("connect", 404, b'{"code": "not_found", "message": "no"}'), "not_found"),
        (call("connect", 503, b"upstream gone"), "unavailable"),
        (call("connect", 415, b""), "unknown"),
        (call("connect", 200, envelope(2, b"{}")), "ok"),
        (call("connect", 200, envelope(2, ABORTED_END)), "aborted"),
        (call("connect", 200, envelope(3, gzip.compress(ABORTED_END)), encoding="gzip"),
         "aborted"),
        # A handler's error an interceptor saw wins over what the wire says.
        (call("connect", 200, envelope(2, b"{}"), error_code="internal"), "internal"),
        # Compressed in an encoding the server does not have: unreadable, so not an error.
        (call("connect", 200, envelope(3, b"\x28\xb5..."), encoding="zstd"), "ok"),
        (call("grpc", 200, grpc_status="0"), "ok"),
        (call("grpc", 200, grpc_status="5"), "not_found"),
        (call("grpc", 200, grpc_status="99"), "unknown"),
        (call("grpc", 415), "unknown"),
        (call("grpc", 200), "unknown"),
        (call("grpc-web", 200, envelope(0x80, UNAUTHENTICATED)), "unauthenticated"),
        (call("grpc-web", 200, envelope(0x81, gzip.compress(UNAUTHENTICATED)), encoding="gzip"),
         "unauthenticated"),
        (call("grpc-web", 200, b"", grpc_status="14"), "unavailable"),
        (call("http", 304), "304"),
        (call("http", 0), "500"),
    ],
)  # fmt: skip
def test_code_from_the_wire(made: Call, code: str) -> None:
    assert call_code(made, {"gzip": GzipCompression()}) == code
