"""Wake-ups for watchers from PostgreSQL ``LISTEN/NOTIFY``.

Notifications only say "the log may have grown"; watchers always read the
event table itself. A missed notification (while the listening connection is
being re-established) therefore only delays a watcher until its next
periodic re-check, it never loses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from server.storage.head import Head

log = logging.getLogger("library.storage")

CHANNEL = "library_events"
_RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
_ALIVE_CHECK_SECONDS = 5.0


class Wakeups(Head):
    """One listening connection per process, waking this process's waiters."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and listen; fails if the database cannot be reached at all."""
        connection = await self._listen()
        self._task = asyncio.create_task(self._keep_listening(connection))

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(self._dsn)
        await connection.add_listener(CHANNEL, self._on_notification)
        return connection

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.advance(int(payload))
        except ValueError:
            log.warning("ignoring a malformed %s notification: %r", CHANNEL, payload)

    async def _keep_listening(self, connection: asyncpg.Connection) -> None:
        try:
            while True:
                await _until_closed(connection)
                log.warning("lost the %s listening connection; reconnecting", CHANNEL)
                # Notifications sent meanwhile are gone: let every waiter re-read the log.
                self.wake_all()
                connection = await self._reconnect()
                self.wake_all()
        finally:
            if not connection.is_closed():
                await connection.close()

    async def _reconnect(self) -> asyncpg.Connection:
        attempt = 0
        while True:
            await asyncio.sleep(_RECONNECT_SECONDS[min(attempt, len(_RECONNECT_SECONDS) - 1)])
            try:
                return await self._listen()
            except (OSError, asyncpg.PostgresError) as e:
                log.warning("cannot listen for events yet: %s", e)
                attempt += 1


async def _until_closed(connection: asyncpg.Connection) -> None:
    """Return when the connection is gone; checks now and then in case no callback comes."""
    lost = asyncio.Event()
    connection.add_termination_listener(lambda _c: lost.set())
    while not connection.is_closed():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lost.wait(), _ALIVE_CHECK_SECONDS)
