"""The access log's two line formats: the same fields in the same order, safe for any path."""

from __future__ import annotations

import json

import pytest

from server.app.telemetry.access_log import (
    ATOMIC_WRITE,
    MAX_PATH_CHARS,
    json_line,
    text_line,
    timestamp,
)
from server.app.telemetry.calls import Call
from tests.support.access_lines import FIELDS

PATHS = [
    "/library.v1.LibraryService/GetBook",
    '/a "quoted" path\\with\tcontrol\x01 and é ✓',
    "/x trace_id=forged",
]


def a_call(procedure: str) -> Call:
    call = Call(
        procedure=procedure,
        protocol="connect",
        peer="127.0.0.1:50000",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    call.wall_time = 1_764_672_000.25
    call.duration = 0.0044213
    call.bytes_in, call.bytes_out, call.code = 11, 59, "not_found"
    return call


def values(call: Call) -> list[object]:
    return [
        timestamp(call.wall_time),
        call.procedure,
        "connect",
        "not_found",
        4.421,
        11,
        59,
        "127.0.0.1:50000",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    ]


@pytest.mark.parametrize("path", PATHS)
def test_json_is_the_standard_encoding_of_the_fields(path: str) -> None:
    call = a_call(path)
    line = json_line(call)
    assert line == json.dumps(dict(zip(FIELDS, values(call), strict=True)), separators=(",", ":"))
    assert line.isascii()
    assert "\n" not in line


@pytest.mark.parametrize("path", PATHS)
def test_text_is_name_value_pairs_on_one_line(path: str) -> None:
    call = a_call(path)
    line = text_line(call)
    shown = path if path.isprintable() and " " not in path else repr(path)
    expected = dict(zip(FIELDS, values(call), strict=True)) | {"procedure": shown}
    assert line == " ".join(f"{name}={value}" for name, value in expected.items())
    assert "\n" not in line


@pytest.mark.parametrize("character", ["a", "\x01", "✓"], ids=["ascii", "control", "non-ascii"])
def test_a_long_path_is_cut_so_every_line_is_one_atomic_write(character: str) -> None:
    path = "/" + character * 60_000
    for line in (json_line(a_call(path)), text_line(a_call(path))):
        assert len(line.encode("utf-8", "backslashreplace")) + 1 <= ATOMIC_WRITE
        assert "..." in line
    assert json.loads(json_line(a_call(path)))["procedure"] == path[:MAX_PATH_CHARS] + "..."
