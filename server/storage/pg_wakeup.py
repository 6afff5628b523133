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
APPLICATION_NAME = "library-listener"
"""How the listening connection names itself to the server (``pg_stat_activity``)."""

_RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


class Wakeups(Head):
    """One listening connection per process, waking this process's waiters.

    ``answer_timeout`` bounds connecting, LISTEN and closing; and every
    ``answer_timeout`` seconds the connection must answer a ``SELECT 1`` within
    it, or is dropped and replaced: a stalled server sends no notifications and
    no sign of its silence, and waiters would otherwise learn only on their
    periodic re-checks, for as long as it lasts.
    """

    def __init__(self, dsn: str, answer_timeout: float) -> None:
        super().__init__()
        self._dsn = dsn
        self._answer_timeout = answer_timeout
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
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._answer_timeout,
            command_timeout=self._answer_timeout,
            server_settings={"application_name": APPLICATION_NAME},
        )
        try:
            await connection.add_listener(CHANNEL, self._on_notification)
        except BaseException:
            connection.terminate()
            raise
        return connection

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.advance(int(payload))
        except ValueError:
            log.warning("ignoring a malformed %s notification: %r", CHANNEL, payload)

    async def _keep_listening(self, connection: asyncpg.Connection) -> None:
        try:
            while True:
                await self._until_lost(connection)
                log.warning("lost the %s listening connection; reconnecting", CHANNEL)
                # Notifications sent meanwhile are gone: let every waiter re-read the log.
                self.wake_all()
                connection = await self._reconnect()
                self.wake_all()
        finally:
            try:
                await connection.close(timeout=self._answer_timeout)
            except Exception as e:
                # asyncpg has dropped the connection by then; the server ends its side.
                log.warning("closing the %s listening connection failed: %s", CHANNEL, e)

    async def _until_lost(self, connection: asyncpg.Connection) -> None:
        """Return once the connection is closed, or dropped for not answering in time."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _c: lost.set())
        while not connection.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._answer_timeout)
                return
            try:
                await connection.execute("SELECT 1")
            except Exception as e:
                log.warning("the %s listening connection did not answer: %r", CHANNEL, e)
                connection.terminate()

    async def _reconnect(self) -> asyncpg.Connection:
        attempt = 0
        while True:
            await asyncio.sleep(_RECONNECT_SECONDS[min(attempt, len(_RECONNECT_SECONDS) - 1)])
            try:
                return await self._listen()
            except Exception as e:
                # Whatever the cause, giving up would leave waiters to their re-checks for good.
                log.warning("cannot listen for events yet: %r", e)
                attempt += 1
