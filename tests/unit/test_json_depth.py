"""The JSON nesting scan that guards protobuf-py's recursive parser."""

from __future__ import annotations

import pytest

from server.rpc.codecs import nested_deeper_than


@pytest.mark.parametrize(
    ("body", "deeper"),
    [
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 65 + b"]" * 65, True),
        (b'{"a": [{"b": [1, 2]}]}' * 1000, False),
        (b'{"title": "' + b"[" * 500 + b'"}', False),  # brackets inside a string
        (b'{"t": "\\"' + b"[" * 500 + b'"}', False),  # after an escaped quote, still a string
        ((b"[" * 64 + b"]" * 64) * 1000 + b"[" * 65, True),  # deep only at the very end
        (b"[" * 70, True),  # unbalanced: openers alone count
    ],
)
def test_depth_is_measured_outside_strings(body: bytes, deeper: bool) -> None:
    assert nested_deeper_than(body, 64) is deeper
