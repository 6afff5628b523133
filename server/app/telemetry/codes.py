"""A call's protocol and status code, read from the request and the response on the wire."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from connectrpc.compression import Compression

if TYPE_CHECKING:
    from server.app.telemetry.calls import Call

OK = "ok"
# gRPC's numeric statuses by their Connect names (the same codes, spelled as Connect does).
GRPC_CODES = {
    "0": OK,
    "1": "canceled",
    "2": "unknown",
    "3": "invalid_argument",
    "4": "deadline_exceeded",
    "5": "not_found",
    "6": "already_exists",
    "7": "permission_denied",
    "8": "resource_exhausted",
    "9": "failed_precondition",
    "10": "aborted",
    "11": "out_of_range",
    "12": "unimplemented",
    "13": "internal",
    "14": "unavailable",
    "15": "data_loss",
    "16": "unauthenticated",
}
GRPC_NUMBERS = {name: int(number) for number, name in GRPC_CODES.items()}
# What gRPC and Connect clients make of an HTTP status that carries no RPC status.
_HTTP_CODES = {
    400: "internal",
    401: "unauthenticated",
    403: "permission_denied",
    404: "unimplemented",
    429: "unavailable",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}
# Envelope flags: Connect's end-of-stream message, gRPC-Web's trailers; 0x01 is "compressed".
_COMPRESSED = 0x01
_CONNECT_END = 0x02
_GRPC_WEB_TRAILERS = 0x80
# A status message is small; anything bigger is not read.
_STATUS_MAX_BYTES = 64 * 1024

Decompressors = Mapping[str, Compression]
"""The server's compressions by name, to read a compressed status message."""


def protocol_of(content_type: bytes | None) -> str:
    """``grpc``, ``grpc-web`` or ``connect``, by the request's content type."""
    if content_type is None or not content_type.startswith(b"application/grpc"):
        return "connect"
    return "grpc-web" if content_type.startswith(b"application/grpc-web") else "grpc"


def call_code(call: Call, decompressors: Decompressors) -> str:
    """The status the client got: a Connect code for an RPC, the HTTP status otherwise.

    A handler's error, seen by an interceptor, wins. Otherwise the wire
    decides: gRPC's ``grpc-status`` (headers, trailers or gRPC-Web's trailer
    frame), Connect's error body or end-of-stream message, and last the HTTP
    status.
    """
    if not call.is_rpc:
        return str(call.http_status or 500)
    if call.error_code is not None:
        return call.error_code
    if call.protocol == "connect":
        return _connect_code(call, decompressors)
    status = call.grpc_status
    if status is None and call.protocol == "grpc-web":
        trailers = _envelope(call, _GRPC_WEB_TRAILERS, decompressors)
        status = None if trailers is None else _grpc_web_status(trailers)
    if status is not None:
        return GRPC_CODES.get(status, "unknown")
    # No status at all (the response was cut off): the client sees an error, not success.
    return _HTTP_CODES.get(call.http_status, "unknown")


def _connect_code(call: Call, decompressors: Decompressors) -> str:
    if call.http_status == 200:
        end = _envelope(call, _CONNECT_END, decompressors)
        return OK if end is None else _json_code(end, nested=True) or OK
    return _json_code(call.last_body, nested=False) or _HTTP_CODES.get(call.http_status, "unknown")


def _envelope(call: Call, kind: int, decompressors: Decompressors) -> bytes | None:
    """The payload of the last envelope if it is of ``kind`` (decompressed), else None."""
    body = call.last_body
    if not body or body[0] & ~_COMPRESSED != kind:
        return None
    payload = body[5:]
    if body[0] & _COMPRESSED:
        compression = decompressors.get(call.encoding or "")
        if compression is None:
            return None
        try:
            return compression.decompress(payload, _STATUS_MAX_BYTES)
        except Exception:
            return None
    return payload


def _json_code(data: bytes, *, nested: bool) -> str | None:
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    if nested:
        document = document.get("error")
        if document is None:
            return None
        if not isinstance(document, dict):
            return "unknown"
    code = document.get("code")
    return code if isinstance(code, str) and code in GRPC_NUMBERS else None


def _grpc_web_status(trailers: bytes) -> str | None:
    for line in trailers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"grpc-status":
            return value.strip().decode("latin-1")
    return None
