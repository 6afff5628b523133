"""Reads ahead of writes: write calls are let in a few per turn of the event loop.

On a saturated core a call waits for the work queued ahead of it on the event
loop. Thirty-two writers keep many writes' worth of work (authentication,
decoding, the handler) queued at once, and a GetBook arriving then waits
behind all of it. The gate parks each write once authenticated, before its
body is read or its handler runs, and lets a few in per turn of the loop (a
caller with no valid token is refused by auth at once, never parked); reads
never wait on it,
so a turn holds the reads that arrived plus a few writes' work, however many
writers there are. It adds no waiting while the loop is idle, and a busy loop
still does as much write work a second (the parked writes cost nothing
meanwhile). Writes in progress are capped too, but only as a bound (64): a
cap of 8 was measured to halve write throughput, as a write in progress also
waits for the disk. README "Reads ahead of writes" has the figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

from connectrpc.request import RequestContext
from protobuf import DescService
from protobuf.wkt.google.protobuf.descriptor_pb import MethodOptions

from server.domain.errors import Unavailable
from server.rpc.errors import to_connect_error

log = logging.getLogger("library")

REQ = TypeVar("REQ")
RES = TypeVar("RES")

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
    """Holds write calls back in two places: turns, then places.

    ``take_turn`` (awaited by AuthInterceptor, after auth and before the body is
    read) lets ``per_turn`` writes in per turn of the loop. ``places`` (a unary
    interceptor, once the request is decoded) lets ``in_progress`` unary writes
    run at once. A place is taken only once the body is in, so a client
    trickling its body holds none; ImportBooks, whose body is its whole upload,
    takes no place (it has its own bounds). Writes wait in arrival order, at most
    ``waiting`` of them in both lines together; one more is refused with
    UNAVAILABLE (retryable) before it has written anything.
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
        self._for_turn: deque[asyncio.Future[None]] = deque()
        self._for_place: deque[asyncio.Future[None]] = deque()
        self.refused = 0
        self._refused_unlogged = 0
        self._logged_at = -_LOG_EVERY
        self.places = _Places(self)

    @property
    def running(self) -> int:
        """Unary write calls holding a place."""
        return self._running

    @property
    def waiting(self) -> int:
        """Write calls waiting for a turn or a place."""
        return len(self._for_turn) + len(self._for_place)

    @property
    def writes(self) -> frozenset[str]:
        """The methods whose calls the gate holds back."""
        return self._writes

    async def take_turn(self) -> None:
        """Return once this write may go on in this turn of the loop."""
        if not self._for_turn and self._let_in < self._per_turn:
            self._let_in += 1
            self._next_turn_soon()
            return
        # A turn given just as its caller goes away is simply unused.
        await self._wait(self._for_turn)

    async def take_place(self) -> None:
        """Return once this write holds a place; give it back with ``leave``."""
        if not self._for_place and self._running < self._limit:
            self._running += 1
            return
        await self._wait(self._for_place)

    def leave(self) -> None:
        """Give back a place: to the first write waiting for one, else free it."""
        while self._for_place:
            waiter = self._for_place.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._running -= 1

    async def _wait(self, line: deque[asyncio.Future[None]]) -> None:
        if self.waiting >= self._max_waiting:
            self._refuse()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.append(waiter)
        if line is self._for_turn:
            self._next_turn_soon()
        try:
            await waiter
        except asyncio.CancelledError:
            # The caller went away (or its deadline passed): a place handed to it
            # is handed on, a place in line is given up.
            if waiter.done() and not waiter.cancelled():
                if line is self._for_place:
                    self.leave()
            elif waiter in line:
                line.remove(waiter)
            raise

    def _next_turn_soon(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        # Runs once per turn of the loop while writes come in: everything queued
        # before it (reads among them) has run, so a few more writes go on.
        self._turn_scheduled = False
        self._let_in = 0
        while self._for_turn and self._let_in < self._per_turn:
            waiter = self._for_turn.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._let_in += 1
        if self._let_in:
            self._next_turn_soon()

    def _refuse(self) -> None:
        self.refused += 1
        self._refused_unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY:
            log.warning(
                "refused %d writes: %d waiting already (LIBRARY_MAX_WAITING_WRITES)",
                self._refused_unlogged,
                self.waiting,
            )
            self._logged_at = now
            self._refused_unlogged = 0
        error = Unavailable(
            f"this server has {self._max_waiting} writes waiting already"
            " (LIBRARY_MAX_WAITING_WRITES); retry shortly"
        )
        raise to_connect_error(error)


class _Places:
    """The gate's unary interceptor: a decoded write runs only with a place."""

    def __init__(self, gate: WriteGate) -> None:
        self._gate = gate

    def intercept_unary(
        self,
        call_next: Callable[[REQ, RequestContext[Any, Any]], Awaitable[RES]],
        request: REQ,
        ctx: RequestContext[Any, Any],
    ) -> Coroutine[Any, Any, RES]:
        """Run the call once it holds a place, if it is a write.

        A read gets the next call's own awaitable, no coroutine of this one
        around it (typed as connectrpc's protocol wants; it only awaits it).
        """
        if ctx.method.name in self._gate.writes:
            return self._placed(call_next, request, ctx)
        return cast("Coroutine[Any, Any, RES]", call_next(request, ctx))

    async def _placed(
        self,
        call_next: Callable[[REQ, RequestContext[Any, Any]], Awaitable[RES]],
        request: REQ,
        ctx: RequestContext[Any, Any],
    ) -> RES:
        gate = self._gate
        await gate.take_place()
        try:
            return await call_next(request, ctx)
        finally:
            gate.leave()
