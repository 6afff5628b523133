"""Reads ahead of writes: write calls are let in a few per turn of the event loop.

On a saturated core a call waits for the work queued ahead of it on the event
loop. Thirty-two writers keep many writes' worth of work (authentication,
decoding, the handler) queued at once, and a GetBook arriving then waits
behind all of it. The gate parks each write before its body is read or its
handler runs and lets a few in per turn of the loop; reads never wait on it,
so a turn holds the reads that arrived plus a few writes' work, however many
writers there are. It adds no waiting while the loop is idle, and a busy loop
still does as much write work a second (the parked writes cost nothing
meanwhile). Counting calls in progress instead (8 at a time) was measured and
halved write throughput: a write in progress also waits for the disk, which
bounded the rate by 8 per commit time. README "Reads ahead of writes" has the
figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from connectrpc.request import RequestContext
from protobuf import DescService
from protobuf.wkt.google.protobuf.descriptor_pb import MethodOptions

from server.domain.errors import Unavailable
from server.rpc.errors import to_connect_error

log = logging.getLogger("library")

# A refusal is logged at most this often, with how many there were since the last line.
_LOG_EVERY = 10.0


def writes_of(service: DescService) -> frozenset[str]:
    """The methods of ``service`` that the gate holds back, from the proto.

    A method marked ``idempotency_level = NO_SIDE_EFFECTS`` only reads. Of the
    others, those that stream answers (WatchBooks, SearchBooks) are not held:
    they stay open for as long as the client likes and have caps of their own;
    every other method may write, so it is held back behind reads.
    """
    return frozenset(
        m.name
        for m in service.methods
        if m.idempotency is not MethodOptions.IdempotencyLevel.NO_SIDE_EFFECTS
        and m.method_kind in ("unary", "client_streaming")
    )


class WriteGate:
    """A leading metadata interceptor: lets ``per_turn`` write calls in per turn of the loop.

    Writes wait in arrival order, at most ``waiting`` of them; one more is
    refused with UNAVAILABLE (retryable) before anything is read or written.
    At most ``in_progress`` run at once; a write's turn ends when its handler
    has answered (connectrpc ends leading interceptors before it encodes the
    response).
    """

    def __init__(
        self, writes: frozenset[str], *, per_turn: int, in_progress: int, waiting: int
    ) -> None:
        self._writes = writes
        self._per_turn = per_turn
        self._limit = in_progress
        self._max_waiting = waiting
        self._running = 0
        self._let_in = 0
        self._turn_scheduled = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.refused = 0
        self._refused_unlogged = 0
        self._logged_at = -_LOG_EVERY

    @property
    def running(self) -> int:
        """Write calls let in and not yet answered."""
        return self._running

    @property
    def waiting(self) -> int:
        """Write calls parked at the gate."""
        return len(self._waiters)

    async def on_start(self, ctx: RequestContext[Any, Any]) -> bool:
        """Let a write in, park it, or refuse it; True when it holds a turn to give back."""
        if ctx.method.name not in self._writes:
            return False
        if not self._waiters and self._running < self._limit and self._let_in < self._per_turn:
            self._enter()
            return True
        if len(self._waiters) >= self._max_waiting:
            self._refuse()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        self._next_turn_soon()
        try:
            await turn
        except asyncio.CancelledError:
            # The caller went away (or its deadline passed): a place given to it
            # is handed on, a place in line is given up.
            if turn.done() and not turn.cancelled():
                self._leave()
            elif turn in self._waiters:
                self._waiters.remove(turn)
            raise
        return True

    async def on_end(self, token: bool, ctx: RequestContext[Any, Any], error: Any) -> None:
        """Give back the turn of a finished write."""
        if token:
            self._leave()

    def _enter(self) -> None:
        self._running += 1
        self._let_in += 1
        # This turn's count ends with the loop's next turn.
        self._next_turn_soon()

    def _leave(self) -> None:
        self._running -= 1
        if self._waiters:
            self._next_turn_soon()

    def _next_turn_soon(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        # Runs once per turn of the loop while writes wait: everything queued
        # before it (reads among them) has run, so a few more writes go in.
        self._turn_scheduled = False
        self._let_in = 0
        while self._waiters and self._running < self._limit and self._let_in < self._per_turn:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                self._enter()
        if self._waiters and self._running < self._limit:
            self._next_turn_soon()

    def _refuse(self) -> None:
        self.refused += 1
        self._refused_unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY:
            log.warning(
                "refused %d writes: %d waiting already (LIBRARY_MAX_WAITING_WRITES)",
                self._refused_unlogged,
                len(self._waiters),
            )
            self._logged_at = now
            self._refused_unlogged = 0
        error = Unavailable(
            f"this server has {self._max_waiting} writes waiting already"
            " (LIBRARY_MAX_WAITING_WRITES); retry shortly"
        )
        raise to_connect_error(error)
