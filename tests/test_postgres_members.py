"""Servers starting together all put the same admin member; none of them fails."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from server.domain.auth import hash_token
from server.domain.models import Role
from server.storage.postgres import PostgresStorage
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio

PROCESSES = 6
# Each round puts a new member: the race is between the first inserts.
ROUNDS = 30


async def test_concurrent_puts_of_one_member_all_succeed(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database()
    storages = [PostgresStorage(url, event_retention=0, pool_size=2) for _ in range(PROCESSES)]
    for storage in storages:
        await storage.open()
    try:
        for round_ in range(ROUNDS):
            token_hash = hash_token(f"lib_round-{round_}-token-0123456789abcdefghijklmnop")
            members = await asyncio.gather(
                *(
                    s.put_member(f"admin {round_}", Role.LIBRARIAN, token_hash, datetime.now(UTC))
                    for s in storages
                )
            )
            assert len({m.id for m in members}) == 1
            found = await storages[0].member_by_token_hash(token_hash)
            assert found is not None
            assert found.id == members[0].id
    finally:
        for storage in storages:
            await storage.close()
