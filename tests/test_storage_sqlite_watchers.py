"""SQLite: however many watchers wait, one poller per process looks for other processes' writes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.domain.models import NewBook
from server.gen.library.v1 import library_pb as pb
from server.storage.sqlite import POLLER_TASK_NAME, SQLiteStorage
from tests.conftest import ADMIN_TOKEN
from tests.support.clients import CONNECT_PROTO, aclose, add_book
from tests.support.data import isbn13
from tests.support.events import next_events, watch
from tests.support.server import ServerProcess
from tests.support.waiting import until

pytestmark = pytest.mark.anyio

WAITERS = 100
WATCHERS = 200
# Longer than any wake-up: a wait that ends sooner was woken, not timed out.
LONG_WAIT_SECONDS = 30.0
# The feed re-checks by itself after a second, so a change must arrive sooner than that.
LIVE_SECONDS = 1.0


def pollers() -> list[asyncio.Task[object]]:
    """This event loop's head pollers that are still running."""
    return [t for t in asyncio.all_tasks() if t.get_name() == POLLER_TASK_NAME and not t.done()]


async def test_one_poller_wakes_every_waiter_for_another_process_write(tmp_path: Path) -> None:
    path = str(tmp_path / "library.db")
    watcher = SQLiteStorage(path, event_retention=0)
    other_process = SQLiteStorage(path, event_retention=0)
    await watcher.open()
    await other_process.open()
    try:
        assert pollers() == []
        waits = [
            asyncio.create_task(watcher.wait_for_events(0, LONG_WAIT_SECONDS))
            for _ in range(WAITERS)
        ]
        await until(lambda: len(pollers()) == 1, "the poller to start")
        (poller,) = pollers()

        await other_process.create_book(NewBook("Far", "F", isbn13(), 2000), datetime.now(UTC))
        await asyncio.wait_for(asyncio.gather(*waits), LIVE_SECONDS)

        # With nobody waiting the poller stops; it starts again for the next waiter.
        await asyncio.wait({poller}, timeout=LIVE_SECONDS)
        assert poller.cancelled()
        again = asyncio.create_task(watcher.wait_for_events(1, LONG_WAIT_SECONDS))
        await until(lambda: len(pollers()) == 1, "the poller to start again")
        (restarted,) = pollers()
        await watcher.close()
        assert restarted.cancelled()
        again.cancel()
        await asyncio.wait({again})
    finally:
        await watcher.close()
        await other_process.close()


async def test_many_watchers_of_one_server_see_another_server_write_promptly(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "library.db")
    env = {"LIBRARY_ADMIN_TOKEN": ADMIN_TOKEN}
    watched = ServerProcess(path, tmp_path / "watched.log", env=env).start()
    writer = ServerProcess(path, tmp_path / "writer.log", env=env).start()
    try:
        async with (
            CONNECT_PROTO.client(watched.url) as reader,
            CONNECT_PROTO.client(writer.url) as author,
        ):
            first = await add_book(author, "first")
            streams = [watch(reader, 0) for _ in range(WATCHERS)]
            # The snapshot holding the first book: every stream is open and now idle.
            snapshots = await asyncio.gather(*(next_events(s, 1) for s in streams))
            assert {events[0].book.id for events in snapshots} == {first.id}

            started = time.monotonic()
            pending = asyncio.gather(*(next_events(s, 1) for s in streams))
            second = await add_book(author, "second")
            live = await pending
            elapsed = time.monotonic() - started
            for stream in streams:
                await aclose(stream)
    finally:
        watched.stop()
        writer.stop()
    assert {(e.type, e.book.id) for (e,) in live} == {(pb.EventType.CREATED, second.id)}
    assert elapsed < LIVE_SECONDS, f"{WATCHERS} watchers took {elapsed:.2f}s to see a change"
