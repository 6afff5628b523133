"""PostgreSQL's writer: a bug past a batch leaves it writing, and its task dying leaves
no write waiting for ever, nor its storage open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from server.domain.errors import Unavailable
from server.storage.pg_writer import Writer
from server.storage.postgres import PostgresStorage, _publish
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio

BOUND_SECONDS = 5.0


class Bug(Exception):
    """A bug past a batch's own error handling: the writer goes on."""


class Escape(BaseException):
    """What no ``except Exception`` catches: the writer's task ends."""


def _crashing(answered: list[Any]) -> None:
    raise Escape("after the commit")


async def _writer_on_a_new_database(
    postgres_cluster: PostgresCluster, on_commit: Callable[[list[Any]], None]
) -> Writer:
    url = postgres_cluster.create_database()
    storage = PostgresStorage(url, event_retention=0, pool_size=1)
    await storage.open()
    await storage.close()

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(url)

    writer = Writer(connect, _publish, on_commit, max_queued=10)
    writer.start()
    return writer


async def _later_write(conn: asyncpg.Connection) -> tuple[str, int]:
    return "later", 0


async def test_a_bug_after_a_batch_leaves_the_writer_writing(
    postgres_cluster: PostgresCluster,
) -> None:
    failures = [Bug("after the commit")]

    def failing_once(answered: list[Any]) -> None:
        if failures:
            raise failures.pop()

    writer = await _writer_on_a_new_database(postgres_cluster, failing_once)
    assert await asyncio.wait_for(writer.write(_later_write), BOUND_SECONDS) == "later"
    assert not failures  # the bug struck that batch, whose caller was answered all the same
    assert await asyncio.wait_for(writer.write(_later_write), BOUND_SECONDS) == "later"
    await asyncio.wait_for(writer.stop(BOUND_SECONDS), BOUND_SECONDS)


async def test_a_crashed_writer_fails_queued_and_later_writes(
    postgres_cluster: PostgresCluster,
) -> None:
    # Its commit hook raises what ends the task, outside the batch's own error handling.
    writer = await _writer_on_a_new_database(postgres_cluster, _crashing)
    running = asyncio.Event()
    go_on = asyncio.Event()

    async def first_write(conn: asyncpg.Connection) -> tuple[str, int]:
        running.set()
        await go_on.wait()
        return "first", 0

    first = asyncio.create_task(writer.write(first_write))
    await asyncio.wait_for(running.wait(), BOUND_SECONDS)
    # Queued behind the batch in progress: the task dies before taking it.
    queued = asyncio.create_task(writer.write(_later_write))
    await asyncio.sleep(0)
    assert writer.queued == 1
    go_on.set()
    assert await asyncio.wait_for(first, BOUND_SECONDS) == "first"
    with pytest.raises(Unavailable):
        await asyncio.wait_for(queued, BOUND_SECONDS)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(writer.write(_later_write), BOUND_SECONDS)
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
        while True:
            if not await _library_sessions(url):
                break
            await asyncio.sleep(0.05)
