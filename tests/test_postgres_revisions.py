"""Revisions become visible in commit order, so following the log never skips one.

With revisions from a sequence, a reader could see 12 before 11 commits and,
resuming after 12, never see 11. Here writers on two storages (as two
processes would) race while a follower keeps asking for what comes after the
last revision it saw; it must end with every revision exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from server.domain.models import NewBook
from server.storage.postgres import PostgresStorage
from tests.support.data import isbn13
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.anyio

WRITERS = 16
BOOKS_EACH = 25


async def test_follower_sees_every_revision_once(postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.create_database()
    storages = [PostgresStorage(url, event_retention=0, pool_size=8) for _ in range(2)]
    for storage in storages:
        await storage.open()
    total = WRITERS * BOOKS_EACH
    seen: list[int] = []

    async def write(storage: PostgresStorage) -> None:
        for i in range(BOOKS_EACH):
            book = NewBook(f"race {i}", "Writer", isbn13(), 2000)
            await storage.create_book(book, datetime.now(UTC))

    async def follow(storage: PostgresStorage) -> None:
        last = 0
        while last < total:
            events = await storage.events_after(last, 50)
            seen.extend(e.revision for e in events)
            if events:
                last = events[-1].revision
            else:
                await storage.wait_for_events(last, 1.0)

    try:
        async with asyncio.timeout(60):
            await asyncio.gather(
                follow(storages[0]), *(write(storages[n % 2]) for n in range(WRITERS))
            )
    finally:
        for storage in storages:
            await storage.close()
    assert seen == list(range(1, total + 1))
