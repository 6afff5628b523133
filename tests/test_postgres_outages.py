"""PostgreSQL: an unreachable database or a lost connection is UNAVAILABLE (retry), not INTERNAL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from server.domain.errors import Unavailable
from server.domain.models import NewBook
from server.storage.postgres import PostgresStorage
from tests.conftest import new_postgres_cluster
from tests.support.data import isbn13
from tests.support.postgres import PostgresCluster
from tests.support.storage_calls import READS, WRITES, Call

pytestmark = pytest.mark.anyio

RECOVERY_SECONDS = 5.0
# Far longer than terminated backends take to exit, however busy the machine.
EXIT_SECONDS = 10.0


async def test_open_reports_an_unreachable_database(tmp_path: Path) -> None:
    # A socket directory no server listens in: the connection is refused at once.
    storage = PostgresStorage(f"postgresql://postgres@/library?host={tmp_path}", event_retention=0)
    with pytest.raises(Unavailable, match="retry"):
        await storage.open()
    await storage.close()


@pytest.fixture
async def admin(postgres_cluster: PostgresCluster) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the cluster's maintenance database."""
    conn = await asyncpg.connect(postgres_cluster.url("postgres"))
    try:
        yield conn
    finally:
        await conn.close()


async def test_queries_report_a_database_that_drops_and_refuses_connections(
    postgres_cluster: PostgresCluster, admin: asyncpg.Connection
) -> None:
    # A role of its own, so its connections can be cut and refused without touching others'.
    role = f"outage_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    await admin.execute(f"CREATE DATABASE {role} OWNER {role}")
    storage = PostgresStorage(
        f"postgresql://{role}@/{role}?host={postgres_cluster.dir}", event_retention=0, pool_size=2
    )
    await storage.open()
    try:
        created = await storage.create_book(NewBook("Kept", "K", isbn13(), 2000), datetime.now(UTC))
        await admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT 0")
        await _cut_off(admin, role)
        # Whether the pool still holds the cut connection or must open a refused one.
        with pytest.raises(Unavailable, match="retry"):
            await storage.get_book(created.id)
        with pytest.raises(Unavailable, match="retry"):
            await storage.create_book(NewBook("Lost", "L", isbn13(), 2000), datetime.now(UTC))

        await admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT -1")
        assert await _once_reachable(storage, created.id) == created
    finally:
        await storage.close()


async def _once_reachable(storage: PostgresStorage, book_id: int) -> object:
    """The book, read as soon as the storage reconnects; the pool may hold one more dead link."""
    async with asyncio.timeout(RECOVERY_SECONDS):
        while True:
            try:
                return await storage.get_book(book_id)
            except Unavailable:
                await asyncio.sleep(0.05)


async def _cut_off(admin: asyncpg.Connection, role: str) -> None:
    """End every connection of ``role`` and return once none is left.

    pg_terminate_backend only signals a backend: one not yet gone would still
    answer the storage's next query.
    """
    async with asyncio.timeout(EXIT_SECONDS):
        while True:
            if not await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
                role,
            ):
                return
            await asyncio.sleep(0.05)


@pytest.fixture
def stoppable_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, which it may stop and start again."""
    with new_postgres_cluster() as cluster:
        yield cluster


async def _outcome(call: Call, storage: PostgresStorage) -> str:
    """What ``call`` raised ("Unavailable: ..."), or "answered" if it did not."""
    try:
        await call(storage)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "answered"


@pytest.mark.postgres
async def test_every_operation_reports_a_database_gone(
    stoppable_cluster: PostgresCluster,
) -> None:
    # Outages are translated where the adapter runs an operation, not per method: none can
    # miss it, whether the pool still holds the dead connection or must open a new one.
    storage = PostgresStorage(stoppable_cluster.create_database(), event_retention=0, pool_size=2)
    await storage.open()
    try:
        # Returns once the server and every backend have exited: nothing can answer.
        stoppable_cluster.halt()
        outcomes = {name: await _outcome(call, storage) for name, call in (READS | WRITES).items()}
    finally:
        await storage.close()
    unavailable = "Unavailable: the database is unavailable; retry shortly"
    assert outcomes == dict.fromkeys(READS | WRITES, unavailable)


_WAITING = "SELECT count(*) FROM pg_locks WHERE NOT granted"


async def test_a_deadlock_with_another_version_is_unavailable(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.create_database()
    storage = PostgresStorage(url, event_retention=0, pool_size=1)
    await storage.open()
    other = await asyncpg.connect(url)
    try:
        book = await storage.create_book(
            NewBook(title="Held", author="A", isbn=isbn13(), published_year=2001),
            datetime.now(UTC),
        )
        # A process taking locks in another order (a book before the head, as a different
        # version might, mid rolling upgrade) deadlocks with the writer's batch.
        async with other.transaction():
            await other.execute("SELECT 1 FROM books WHERE id = $1 FOR UPDATE", book.id)
            deleting = asyncio.create_task(storage.delete_book(book.id, datetime.now(UTC)))
            async with asyncio.timeout(RECOVERY_SECONDS):
                while True:
                    if await other.fetchval(_WAITING):
                        break
                    await asyncio.sleep(0.01)
            # PostgreSQL breaks the deadlock by failing the writer's statement, which waited first.
            await other.execute("SELECT 1 FROM event_head FOR UPDATE")
        with pytest.raises(Unavailable):
            await asyncio.wait_for(deleting, RECOVERY_SECONDS)
        # Retried, it goes through.
        deleted = await storage.delete_book(book.id, datetime.now(UTC))
        assert deleted.id == book.id
    finally:
        await other.close()
        await storage.close()
