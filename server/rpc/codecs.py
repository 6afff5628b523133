"""The message codecs every service is served with: JSON nesting is bounded before parsing.

protobuf-py 0.7's native extension parses JSON recursively on the C stack: a body of
about 14,000 nested arrays (28 KB; 3,500 inside Envoy's smaller thread stacks) kills the
process with SIGSEGV before any Python code can refuse it. Nested objects and binary
messages are refused by its own depth limit of 100, arrays are not. So every JSON
message, whatever the protocol, method or transport, is measured here first, with a
linear scan that never recurses, and refused with INVALID_ARGUMENT past ``max_depth``.
"""

from __future__ import annotations

import re
from typing import Any

from connectrpc.code import Code
from connectrpc.codec import Codec, proto_binary_codec, proto_json_codec
from connectrpc.errors import ConnectError

from server.domain.errors import bounded_message

# A JSON string, escapes included; an unterminated one runs to the end, so the
# scan stays linear (every match ends at a quote or at the end, and never fails).
_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?')
# Every byte but brackets is deleted, and both kinds of brackets become parentheses.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")
_PARENTHESES = bytes.maketrans(b"[{]}", b"(())")


def nested_deeper_than(data: bytes | bytearray, limit: int) -> bool:
    """Whether arrays and objects in ``data`` nest more than ``limit`` deep, outside strings.

    Each pass deletes every innermost pair, so a pass lowers the depth by one; a
    run of openers as long as the depth left to allow ends the scan early. Every
    step is a C loop over bytes: no recursion, no Python loop per byte.
    """
    bare = _STRING.sub(b"", data)
    brackets = bare.translate(None, _NOT_BRACKETS).translate(_PARENTHESES)
    for passes in range(limit + 1):
        if b"(" * (limit + 1 - passes) in brackets:
            return True
        shallower = brackets.replace(b"()", b"")
        if len(shallower) == len(brackets):
            return False
        brackets = shallower
    return True


class DepthLimitedJSONCodec:
    """The protobuf JSON codec, refusing input nested deeper than ``max_depth``."""

    def __init__(self, max_depth: int) -> None:
        self._inner: Codec = proto_json_codec()
        self._max_depth = max_depth

    def name(self) -> str:
        """``json``, as the codec it wraps."""
        return self._inner.name()

    def encode(self, message: Any) -> bytes:
        """Marshal as the wrapped codec does."""
        return self._inner.encode(message)

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        """Unmarshal, after checking the nesting depth without recursing."""
        # Depth never exceeds the number of openers, which bytes.count finds in C;
        # only bodies with that many brackets pay for the scan.
        if data.count(b"[") + data.count(b"{") > self._max_depth and nested_deeper_than(
            data, self._max_depth
        ):
            raise ConnectError(
                Code.INVALID_ARGUMENT,
                f"JSON nested more than {self._max_depth} levels deep is not accepted",
            )
        return _decoded(self._inner, data, message_class)


class BoundedErrorBinaryCodec:
    """The protobuf binary codec (its own depth limit is 100), with short error messages."""

    def __init__(self) -> None:
        self._inner: Codec = proto_binary_codec()

    def name(self) -> str:
        """``proto``, as the codec it wraps."""
        return self._inner.name()

    def encode(self, message: Any) -> bytes:
        """Marshal as the wrapped codec does."""
        return self._inner.encode(message)

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        """Unmarshal as the wrapped codec does."""
        return _decoded(self._inner, data, message_class)


def _decoded(codec: Codec, data: bytes | bytearray, message_class: type[Any]) -> Any:
    # connectrpc would put the parser's whole message into the error, and
    # protobuf-py's messages quote the offending input.
    try:
        return codec.decode(data, message_class)
    except Exception as e:
        raise ConnectError(
            Code.INVALID_ARGUMENT, f"unmarshal message: {bounded_message(str(e))}"
        ) from e


def codecs(max_json_depth: int) -> list[Codec]:
    """The codecs for every service: binary first, as connectrpc's defaults are."""
    return [BoundedErrorBinaryCodec(), DepthLimitedJSONCodec(max_json_depth)]
