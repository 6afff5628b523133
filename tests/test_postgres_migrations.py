"""Migrations on PostgreSQL: processes starting together must not trip over each other."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from server.storage.postgres import _MIGRATION_LOCK_KEY, PostgresStorage
from tests.support.held_writes import writes_held
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio

STARTERS = 8


async def test_storages_opening_at_once_migrate_once_and_share_a_key(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database()
    storages = [PostgresStorage(url, event_retention=0, pool_size=1) for _ in range(STARTERS)]
    # All transactions overlap: without the advisory lock, several would
    # create the same tables at once and fail.
    await asyncio.gather(*(s.open() for s in storages))
    try:
        keys = {await s.signing_key() for s in storages}
    finally:
        await asyncio.gather(*(s.close() for s in storages))
    assert len(keys) == 1


SHORT_TIMEOUT = 0.3


async def _waiting_for_lock(admin: asyncpg.Connection) -> int:
    """Sessions waiting for a lock not yet granted."""
    waiting: int = await admin.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted")
    return waiting


async def test_storages_wait_for_a_migration_however_long_it_takes(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database()
    holder = await asyncpg.connect(url)
    try:
        # A third process mid-migration: it holds the migration lock far past the answer timeout.
        await holder.execute(f"SELECT pg_advisory_lock({_MIGRATION_LOCK_KEY})")
        storages = [
            PostgresStorage(url, event_retention=0, pool_size=1, answer_timeout=SHORT_TIMEOUT)
            for _ in range(2)
        ]
        opening = asyncio.gather(*(s.open() for s in storages))
        waiting = 0
        async with asyncio.timeout(10):
            while waiting < 2 and not opening.done():
                await asyncio.sleep(0.01)
                waiting = await _waiting_for_lock(holder)
        # Both still waiting after several answer timeouts (a deadline, not a guess).
        await asyncio.sleep(SHORT_TIMEOUT * 4)
        assert not opening.done(), opening.exception()
        assert await _waiting_for_lock(holder) == 2
        await holder.execute(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK_KEY})")
        await asyncio.wait_for(opening, 10)
    finally:
        await holder.close()
    try:
        keys = {await s.signing_key() for s in storages}
    finally:
        await asyncio.gather(*(s.close() for s in storages))
    assert len(keys) == 1


async def test_an_open_with_nothing_to_migrate_leaves_writers_alone(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database()
    first = PostgresStorage(url, event_retention=0, pool_size=1)
    await first.open()
    await first.close()
    # Another process's batch holds the head; a worker (re)starting must not queue behind it,
    # nor make every writer queue behind itself.
    async with writes_held(url):
        storage = PostgresStorage(url, event_retention=0, pool_size=1, answer_timeout=SHORT_TIMEOUT)
        await storage.open()
        await storage.close()
