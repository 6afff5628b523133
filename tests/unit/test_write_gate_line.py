"""The write gate's line: turns handed over in order, places given up by callers that go away."""

from __future__ import annotations

import asyncio

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.rpc.write_gate import WriteGate

pytestmark = pytest.mark.anyio


async def settled() -> None:
    """Let every task that can run, run (the gate's hand-overs are one step each)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_places_pass_in_arrival_order_and_reads_never_wait() -> None:
    gate = WriteGate(frozenset({"CreateBook"}), per_turn=1, in_progress=1, waiting=2)
    await gate.take_place()
    second = asyncio.create_task(gate.take_place())
    third = asyncio.create_task(gate.take_place())
    await settled()
    assert (gate.running, gate.waiting) == (1, 2)
    assert "CreateBook" in gate.writes
    assert "GetBook" not in gate.writes
    with pytest.raises(ConnectError) as refused:
        await gate.take_place()
    assert refused.value.code is Code.UNAVAILABLE
    assert "LIBRARY_MAX_WAITING_WRITES" in refused.value.message
    assert gate.refused == 1
    gate.leave()
    await second
    assert not third.done()
    gate.leave()
    await third
    gate.leave()
    assert (gate.running, gate.waiting) == (0, 0)


async def test_a_few_writes_per_turn_of_the_loop() -> None:
    gate = WriteGate(frozenset({"CreateBook"}), per_turn=2, in_progress=64, waiting=10)
    turns = [asyncio.create_task(gate.take_turn()) for _ in range(5)]
    # The first two go on in this turn, the rest one turn after another, in order.
    await asyncio.sleep(0)
    assert [t.done() for t in turns] == [True, True, False, False, False]
    await settled()
    assert all(t.done() for t in turns)
    assert gate.waiting == 0


async def test_a_caller_that_goes_away_gives_up_its_place_or_hands_it_on() -> None:
    gate = WriteGate(frozenset({"CreateBook"}), per_turn=1, in_progress=1, waiting=2)
    await gate.take_place()
    gone = asyncio.create_task(gate.take_place())
    await settled()
    gone.cancel()
    await settled()
    assert (gate.running, gate.waiting) == (1, 0)
    # A place handed over just as its caller goes away passes on to the next.
    handed = asyncio.create_task(gate.take_place())
    after = asyncio.create_task(gate.take_place())
    await settled()
    gate.leave()
    handed.cancel()
    await after
    assert (gate.running, gate.waiting) == (1, 0)
    gate.leave()
    assert (gate.running, gate.waiting) == (0, 0)


async def test_a_full_line_refuses_a_write_waiting_for_its_turn() -> None:
    gate = WriteGate(frozenset({"CreateBook"}), per_turn=1, in_progress=64, waiting=1)
    # Three arrive in one turn of the loop: one goes on, one waits, one is refused.
    first, second, third = (asyncio.create_task(gate.take_turn()) for _ in range(3))
    await settled()
    assert isinstance(third.exception(), ConnectError)
    assert first.done()
    assert second.done()
    assert gate.refused == 1
