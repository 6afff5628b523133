"""LISTEN/NOTIFY wake-ups survive losing the listening connection."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from server.domain.models import NewBook
from server.storage.pg_wakeup import APPLICATION_NAME as LISTENER_NAME
from server.storage.pg_wakeup import CHANNEL
from server.storage.postgres import PostgresStorage
from tests.support.data import isbn13
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio

# Far longer than a wake-up takes, so the safety-net timeout cannot end a wait.
LONG_WAIT_SECONDS = 30.0
WAKE_LIMIT_SECONDS = 5.0


async def test_listener_reconnects_after_its_connection_is_killed(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database()
    watcher = PostgresStorage(url, event_retention=0, pool_size=2)
    writer = PostgresStorage(url, event_retention=0, pool_size=2)
    await watcher.open()
    await writer.open()
    try:
        # Kills both storages' listeners; only the watcher's recovery is under test.
        await _terminate_listeners(url)
        await _wait_for_listeners(url, 2)
        # Only a notification can raise the watcher's known head: it writes nothing itself.
        assert watcher.committed_head == 0
        started = time.monotonic()
        await writer.create_book(NewBook("Woken", "W", isbn13(), 2000), datetime.now(UTC))
        (created,) = await writer.events_after(0, 10)
        async with asyncio.timeout(WAKE_LIMIT_SECONDS):
            # Reconnecting wakes waiters too, so a wake-up alone proves nothing: wait for the head.
            while watcher.committed_head < created.revision:
                await watcher.wait_for_events(watcher.committed_head, LONG_WAIT_SECONDS)
    finally:
        await watcher.close()
        await writer.close()
    assert time.monotonic() - started < WAKE_LIMIT_SECONDS


async def _terminate_listeners(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1",
            LISTENER_NAME,
        )
    finally:
        await conn.close()
    assert killed == 2


async def _wait_for_listeners(url: str, count: int) -> None:
    """Until ``count`` connections listen again (the storages reconnect by themselves)."""
    conn = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(WAKE_LIMIT_SECONDS):
            while True:
                listening = await conn.fetchval(
                    # Listening: LISTEN done, and perhaps the liveness check after it.
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = $1"
                    " AND query IN ($2, 'SELECT 1') AND state = 'idle'",
                    LISTENER_NAME,
                    f'LISTEN "{CHANNEL}"',
                )
                if listening >= count:
                    return
                await asyncio.sleep(0.05)
    finally:
        await conn.close()
