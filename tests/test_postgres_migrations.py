"""Migrations on PostgreSQL: processes starting together must not trip over each other."""

from __future__ import annotations

import asyncio

import pytest

from server.storage.postgres import PostgresStorage
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
