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

log = logging.getLogger("library.storage")

CHANNEL = "library_events"
_RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
_ALIVE_CHECK_SECONDS = 5.0


class Wakeups:
    """One listening connection per process, waking this process's waiters."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._head = 0
        self._changed = asyncio.Event()
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

    def advance(self, revision: int) -> None:
        """Record that ``revision`` is committed and wake everyone waiting for it."""
        if revision > self._head:
            self._head = revision
            self._wake_all()

    @property
    def head(self) -> int:
        """The newest revision this process knows to be committed."""
        return self._head

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next wake-up; wait on it after checking ``head``."""
        return self._changed

    def _wake_all(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

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
                self._wake_all()
                connection = await self._reconnect()
                self._wake_all()
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
