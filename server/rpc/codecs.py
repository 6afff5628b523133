"""The message codecs every service is served with: JSON nesting is bounded before parsing.

protobuf-py 0.7's native extension parses JSON recursively on the C stack: a body of
about 14,000 nested arrays (28 KB; 3,500 inside Envoy's smaller thread stacks) kills the
process with SIGSEGV before any Python code can refuse it. Nested objects and binary
messages are refused by its own depth limit of 100, arrays are not. So every JSON
message, whatever the protocol, method or transport, is measured here first, with a
linear scan that never recurses, and refused with INVALID_ARGUMENT past ``max_depth``.
"""

from __future__ import annotations

import array
import itertools
import re
from collections import OrderedDict
from typing import Any

from connectrpc.code import Code
from connectrpc.codec import Codec, proto_binary_codec, proto_json_codec
from connectrpc.errors import ConnectError

from server.domain.errors import bounded_message

# A JSON string, escapes included; an unterminated one runs to the end, so the
# scan stays linear (every match ends at a quote or at the end, and never fails).
_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?')
# Every byte but brackets is deleted; openers become 1 and closers -1 (0xff as a signed byte).
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def nested_deeper_than(data: bytes | bytearray, limit: int) -> bool:
    """Whether arrays and objects in ``data`` nest more than ``limit`` deep, outside strings.

    The depth at each bracket is the running sum of +1 per opener and -1 per
    closer; one pass, each step in C (translate, array, accumulate, max): about
    0.15 s for 4 MiB of nothing but brackets, the largest message accepted.
    """
    bare = _STRING.sub(b"", data)
    steps = array.array("b", bare.translate(None, _NOT_BRACKETS).translate(_STEPS))
    return max(itertools.accumulate(steps), default=0) > limit


class SharedEncodings:
    """Each shared message encoded once per codec, however many streams send it.

    connectrpc encodes every message a stream yields, so one event yielded to
    10,000 WatchBooks streams would be encoded 10,000 times. The event hub
    registers each live event's message here with :meth:`share`, and the codecs
    answer it from here after its first encoding. Only the newest ``size``
    shared messages are kept (a stream further behind encodes its own copy), and
    each entry holds its message, so its ``id`` cannot be reused while cached.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[int, tuple[Any, dict[str, bytes]]] = OrderedDict()
        self.encodings = 0

    def __len__(self) -> int:
        return len(self._entries)

    def share(self, message: Any) -> None:
        """Register ``message`` as sent, unchanged, to many streams."""
        self._entries[id(message)] = (message, {})
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def encode(self, codec: Codec, message: Any) -> bytes:
        """``codec``'s encoding of ``message``, computed once if it is shared."""
        entry = self._entries.get(id(message))
        if entry is None or entry[0] is not message:
            return codec.encode(message)
        encoded = entry[1]
        name = codec.name()
        data = encoded.get(name)
        if data is None:
            data = encoded[name] = codec.encode(message)
            self.encodings += 1
        return data


class DepthLimitedJSONCodec:
    """The protobuf JSON codec, refusing input nested deeper than ``max_depth``."""

    def __init__(self, max_depth: int, shared: SharedEncodings | None = None) -> None:
        self._inner: Codec = proto_json_codec()
        self._max_depth = max_depth
        self._shared = SharedEncodings(0) if shared is None else shared

    def name(self) -> str:
        """``json``, as the codec it wraps."""
        return self._inner.name()

    def encode(self, message: Any) -> bytes:
        """Marshal as the wrapped codec does (a shared message only once)."""
        return self._shared.encode(self._inner, message)

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

    def __init__(self, shared: SharedEncodings | None = None) -> None:
        self._inner: Codec = proto_binary_codec()
        self._shared = SharedEncodings(0) if shared is None else shared

    def name(self) -> str:
        """``proto``, as the codec it wraps."""
        return self._inner.name()

    def encode(self, message: Any) -> bytes:
        """Marshal as the wrapped codec does (a shared message only once)."""
        return self._shared.encode(self._inner, message)

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


def codecs(max_json_depth: int, shared: SharedEncodings | None = None) -> list[Codec]:
    """The codecs for every service: binary first, as connectrpc's defaults are.

    Messages registered in ``shared`` are encoded once per codec for all streams.
    """
    return [BoundedErrorBinaryCodec(shared), DepthLimitedJSONCodec(max_json_depth, shared)]
