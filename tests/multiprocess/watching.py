"""Reading WatchBooks the way a resuming client does: from a revision, across servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from connectrpc.errors import ConnectError
from pyqwest import Client as HTTPClient
from pyqwest import HTTPTransport

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClient
from tests.support.clients import CONNECT_PROTO, aclose
from tests.support.events import Seen

STREAM_TIMEOUT_MS = 120_000


@contextlib.asynccontextmanager
async def own_client(url: str) -> AsyncIterator[LibraryServiceClient]:
    """A client with connections of its own, all closed on exit.

    Clients otherwise share one pool, and a kept-alive connection to a killed
    process would fail the next call made on it.
    """
    transport = HTTPTransport()
    try:
        async with LibraryServiceClient(
            url,
            protocol=CONNECT_PROTO.protocol,
            codec=CONNECT_PROTO.codec,
            http_client=HTTPClient(transport),
        ) as client:
            yield client
    finally:
        await transport.aclose()


@dataclass
class Follower:
    """A watcher that remembers every event it got and the last revision it saw."""

    last: int = 0
    events: list[Seen] = field(default_factory=list)
    connections: int = 0
    errors: list[ConnectError] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, count: int) -> None:
        """Wait until ``count`` events have been read in all."""
        while len(self.events) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def read(self, url: str, count: int, idle: float) -> None:
        """Connect to ``url`` since ``last`` and read up to ``count`` events, then disconnect.

        Also disconnects when no event comes for ``idle`` seconds, and when
        the stream fails (the error is kept in ``errors``).
        """
        self.connections += 1
        async with own_client(url) as client:
            stream = client.watch_books(
                pb.WatchBooksRequest(since_revision=self.last), timeout_ms=STREAM_TIMEOUT_MS
            )
            try:
                await self._take(stream, count, idle)
            finally:
                await aclose(stream)

    async def _take(
        self, stream: AsyncIterator[pb.WatchBooksResponse], count: int, idle: float
    ) -> None:
        # A reader task feeds a queue, so giving up on an idle stream cancels a
        # queue read and not the stream in mid-message.
        queue: asyncio.Queue[pb.BookEvent | None] = asyncio.Queue()
        done = False

        async def pump() -> None:
            try:
                async for response in stream:
                    queue.put_nowait(response.event)
            except ConnectError as e:
                if not done:  # not the cancellation below
                    self.errors.append(e)
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(pump())
        try:
            for _ in range(count):
                try:
                    event = await asyncio.wait_for(queue.get(), idle)
                except TimeoutError:
                    return
                if event is None:
                    return
                self.events.append(Seen.of(event))
                self.last = event.revision
                self._arrived.set()
        finally:
            done = True
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectError):
                await reader


async def read_log(url: str, since: int, count: int, within: float = 30.0) -> list[Seen]:
    """Exactly ``count`` events after ``since`` from one uninterrupted stream."""
    follower = Follower(last=since)
    await follower.read(url, count, idle=within)
    assert not follower.errors, follower.errors
    assert len(follower.events) == count, (
        f"the log holds {len(follower.events)} events, not {count}"
    )
    return follower.events
