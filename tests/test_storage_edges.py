"""Storage at its edges, on both backends: a pruned log, a NUL in a query, migrations racing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.storage.records import PRUNE_EVERY
from tests.support.clients import (
    CONNECT_PROTO,
    LIBRARIAN,
    add_book,
    book_request,
    present,
    stream_of,
    take,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio

RETENTION = 10
# One pruning round makes the floor PRUNE_EVERY - RETENTION.
EVENTS = PRUNE_EVERY + 4
FLOOR = PRUNE_EVERY - RETENTION
MIGRATORS = 4


async def test_pruned_log_answers_out_of_range(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(env={"LIBRARY_EVENT_RETENTION": str(RETENTION)})
    async with CONNECT_PROTO.client(server.url) as client:
        imported = await client.import_books(
            stream_of(_import_request(book_request(f"pruned {i}")) for i in range(EVENTS)),
            headers=LIBRARIAN,
        )
        assert imported.created_count == EVENTS
        with pytest.raises(ConnectError) as pruned:
            await take(client.watch_books(pb.WatchBooksRequest(since_revision=FLOOR - 1)), 1)
        with pytest.raises(ConnectError) as ahead:
            await take(client.watch_books(pb.WatchBooksRequest(since_revision=EVENTS + 1)), 1)
        (oldest_kept,) = await take(
            client.watch_books(pb.WatchBooksRequest(since_revision=FLOOR)), 1
        )
        (snapshot_first,) = await take(client.watch_books(pb.WatchBooksRequest()), 1)
    assert pruned.value.code is Code.OUT_OF_RANGE
    assert ahead.value.code is Code.OUT_OF_RANGE
    assert present(oldest_kept.event).revision == FLOOR + 1
    assert present(snapshot_first.event).revision == EVENTS


async def test_nul_in_a_query_matches_nothing(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        await add_book(client, "nul")
        found = await client.list_books(pb.ListBooksRequest(query="nul\x00"))
    assert list(found.books) == []
    assert found.total_size == 0


def test_concurrent_migrate_commands_all_succeed(
    database_factory: Callable[[], str], server_factory: Callable[..., ServerProcess]
) -> None:
    url = database_factory()

    def migrate(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "server", "migrate", "--database", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    with ThreadPoolExecutor(MIGRATORS) as pool:
        results = list(pool.map(migrate, range(MIGRATORS)))
    assert [(r.returncode, r.stdout.strip()) for r in results] == [
        (0, "database is up to date")
    ] * MIGRATORS, [r.stderr for r in results]
    again = migrate(0)
    assert again.returncode == 0, again.stderr
    assert server_factory(url).port


def _import_request(request: pb.CreateBookRequest) -> pb.ImportBooksRequest:
    return pb.ImportBooksRequest(
        title=request.title,
        author=request.author,
        isbn=request.isbn,
        published_year=request.published_year,
    )
