"""The access log's writer: a loop pass's lines written together, bounded, never failing a call."""

from __future__ import annotations

import asyncio
import io
import select

from server.app.telemetry.access_log import LineWriter


class Recording(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


class Broken(io.StringIO):
    """A stream whose every write fails, as a closed pipe's does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError("the reader went away")


def test_one_pass_is_one_write() -> None:
    stream = Recording()
    writer = LineWriter(stream)

    async def two_passes() -> None:
        writer.write("a")
        writer.write("b")
        assert stream.writes == []
        await asyncio.sleep(0)
        writer.write("c")
        await asyncio.sleep(0)

    asyncio.run(two_passes())
    writer.close()
    assert stream.writes == ["a\nb\n", "c\n"]


def test_past_the_bound_lines_are_written_at_once() -> None:
    stream = Recording()
    writer = LineWriter(stream, max_buffered=10)

    async def one_pass() -> None:
        for line in ("0123", "4567", "89ab"):
            writer.write(line)
        assert stream.writes == ["0123\n4567\n89ab\n"]
        writer.write("c")
        assert stream.getvalue() == "0123\n4567\n89ab\n"

    asyncio.run(one_pass())
    writer.close()
    assert stream.getvalue() == "0123\n4567\n89ab\nc\n"


def test_outside_a_loop_a_line_is_written_at_once() -> None:
    stream = Recording()
    writer = LineWriter(stream)
    writer.write("now")
    assert stream.writes == ["now\n"]
    writer.close()


def test_close_writes_what_is_held() -> None:
    stream = Recording()
    writer = LineWriter(stream)

    async def shut_down_in_the_pass() -> None:
        writer.write("last")
        writer.close()

    asyncio.run(shut_down_in_the_pass())
    assert stream.getvalue() == "last\n"


def test_a_failed_write_loses_lines_not_the_call() -> None:
    writer = LineWriter(Broken())
    writer.write("one")

    async def one_pass() -> None:
        writer.write("two")
        writer.write("three")
        await asyncio.sleep(0)

    asyncio.run(one_pass())
    writer.close()
    assert writer.lost == 3


def test_each_write_is_whole_lines_a_pipe_keeps_together() -> None:
    stream = Recording()
    writer = LineWriter(stream)
    lines = [f"{index:03d} " + "é" * 60 + "x" * 40 for index in range(200)]

    async def one_pass() -> None:
        for line in lines:
            writer.write(line)

    asyncio.run(one_pass())
    writer.close()
    assert 1 < len(stream.writes) < len(lines)
    for text in stream.writes:
        assert text.endswith("\n")
        assert len(text.encode()) <= select.PIPE_BUF
    assert "".join(stream.writes) == "".join(f"{line}\n" for line in lines)
