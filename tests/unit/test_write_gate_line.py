"""The write gate's line: turns handed over in order, places given up by callers that go away."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.rpc.write_gate import WriteGate

pytestmark = pytest.mark.anyio


def call(name: str) -> Any:
    """A request context for ``name``: all the gate looks at."""
    return SimpleNamespace(method=SimpleNamespace(name=name))


WRITE = call("CreateBook")
READ = call("GetBook")


async def settled() -> None:
    """Let every task that can run, run (the gate's hand-overs are one step each)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_turns_pass_in_arrival_order_and_reads_never_wait() -> None:
    gate = WriteGate(frozenset({"CreateBook"}), per_turn=1, in_progress=1, waiting=2)
    assert await gate.on_start(WRITE) is True
    second = asyncio.create_task(gate.on_start(WRITE))
    third = asyncio.create_task(gate.on_start(WRITE))
    await settled()
    assert (gate.running, gate.waiting) == (1, 2)
    assert await gate.on_start(READ) is False
    with pytest.raises(ConnectError) as refused:
        await gate.on_start(WRITE)
    assert refused.value.code is Code.UNAVAILABLE
    assert gate.refused == 1
    await gate.on_end(True, WRITE, None)
    assert await second is True
    assert not third.done()
    await gate.on_end(True, WRITE, None)
    assert await third is True
    await gate.on_end(True, WRITE, None)
    assert (gate.running, gate.waiting) == (0, 0)


async def test_a_caller_that_goes_away_gives_up_its_place_or_its_turn() -> None:
    gate = WriteGate(frozenset({"CreateBook"}), per_turn=1, in_progress=1, waiting=2)
    assert await gate.on_start(WRITE) is True
    gone = asyncio.create_task(gate.on_start(WRITE))
    await settled()
    gone.cancel()
    await settled()
    assert (gate.running, gate.waiting) == (1, 0)
    # A turn handed over just as its caller goes away passes on to the next.
    handed = asyncio.create_task(gate.on_start(WRITE))
    after = asyncio.create_task(gate.on_start(WRITE))
    await settled()
    await gate.on_end(True, WRITE, None)
    handed.cancel()
    assert await after is True
    assert (gate.running, gate.waiting) == (1, 0)
    await gate.on_end(True, WRITE, None)
    assert (gate.running, gate.waiting) == (0, 0)
