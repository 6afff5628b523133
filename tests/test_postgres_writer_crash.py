"""PostgreSQL's writer task dying does not leave writes waiting for ever, nor its storage open."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from server.domain.errors import Unavailable
from server.storage.pg_writer import Writer
from server.storage.postgres import PostgresStorage, _publish
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio

BOUND_SECONDS = 5.0


class Crash(Exception):
    """What escapes the writer's loop in these tests."""


def _crashing(answered: list[Any]) -> None:
    raise Crash("after the commit")


async def test_a_crashed_writer_fails_queued_and_later_writes(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database()
    storage = PostgresStorage(url, event_retention=0, pool_size=1)
    await storage.open()
    await storage.close()

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(url)

    # Its commit hook fails outside the batch's own error handling, ending the task.
    writer = Writer(connect, _publish, _crashing, max_queued=10)
    writer.start()
    running = asyncio.Event()
    go_on = asyncio.Event()

    async def first_write(conn: asyncpg.Connection) -> tuple[str, int]:
        running.set()
        await go_on.wait()
        return "first", 0

    async def later_write(conn: asyncpg.Connection) -> tuple[str, int]:
        return "later", 0

    first = asyncio.create_task(writer.write(first_write))
    await asyncio.wait_for(running.wait(), BOUND_SECONDS)
    # Queued behind the batch in progress: the task dies before taking it.
    queued = asyncio.create_task(writer.write(later_write))
    await asyncio.sleep(0)
    assert writer.queued == 1
    go_on.set()
    assert await asyncio.wait_for(first, BOUND_SECONDS) == "first"
    with pytest.raises(Unavailable):
        await asyncio.wait_for(queued, BOUND_SECONDS)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(writer.write(later_write), BOUND_SECONDS)
    await asyncio.wait_for(writer.stop(BOUND_SECONDS), BOUND_SECONDS)


async def _library_sessions(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'library-%'"
        )
        return count
    finally:
        await conn.close()


async def test_close_after_a_writer_crash_closes_everything(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database()
    storage = PostgresStorage(url, event_retention=0, pool_size=1, answer_timeout=BOUND_SECONDS)
    await storage.open()
    storage.writer._on_commit = _crashing
    await storage.set_token_hash("nobody", "x")
    with pytest.raises(Unavailable):
        await storage.set_token_hash("nobody", "y")
    # The writer's crash is logged, not raised again: the listener and the pool close too.
    await asyncio.wait_for(storage.close(), BOUND_SECONDS * 3)
    assert storage.pool_usage is None
    async with asyncio.timeout(BOUND_SECONDS):
        while sessions := await _library_sessions(url):
            assert sessions > 0
            await asyncio.sleep(0.05)
