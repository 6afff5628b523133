"""WatchBooks: snapshot, live events, resume without gaps or repeats, and its errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClient
from tests.support.clients import (
    CONNECT_PROTO,
    LIBRARIAN,
    STREAM_TIMEOUT_MS,
    Wire,
    aclose,
    add_book,
    add_member,
    book_request,
    over_all_wires,
    present,
    stream_of,
    unique,
)
from tests.support.data import isbn13
from tests.support.events import Seen, next_events, watch
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio

Event = pb.EventType


def assert_increasing(events: list[Seen], after: int) -> None:
    """Revisions go strictly up, starting above ``after``."""
    revisions = [after, *(e.revision for e in events)]
    assert revisions == sorted(set(revisions)), f"revisions not strictly increasing: {revisions}"


async def live_book_count(client: LibraryServiceClient) -> int:
    """How many books a snapshot holds right now."""
    return (await client.list_books(pb.ListBooksRequest(page_size=1))).total_size


@over_all_wires
async def test_snapshot_then_live_then_resume(server: ServerProcess, wire: Wire) -> None:
    async with wire.client(server.url) as client:
        kept = await add_book(client)
        removed = await add_book(client)
        await client.delete_book(pb.DeleteBookRequest(id=removed.id), headers=LIBRARIAN)
        _, member = await add_member(client)

        first = watch(client, 0)
        snapshot = await next_events(first, await live_book_count(client))
        b = await add_book(client)
        (created_b,) = await next_events(first, 1)
        await aclose(first)

        # Changes while nobody watches: each must show up exactly once on resume.
        await client.checkout_book(pb.CheckoutBookRequest(id=b.id), headers=member)
        await client.return_book(pb.ReturnBookRequest(id=b.id), headers=member)
        c = await add_book(client)
        await client.delete_book(pb.DeleteBookRequest(id=c.id), headers=LIBRARIAN)

        second = watch(client, created_b.revision)
        missed = await next_events(second, 4)
        d = await add_book(client)
        (created_d,) = await next_events(second, 1)
        await aclose(second)

    snapshot_revision = snapshot[0].revision
    assert {e.type for e in snapshot} == {Event.CREATED}
    assert {e.revision for e in snapshot} == {snapshot_revision}
    assert kept in [e.book for e in snapshot]
    assert removed.id not in {e.book.id for e in snapshot}
    assert (created_b.type, created_b.book) == (Event.CREATED, b)
    assert created_b.revision > snapshot_revision
    assert [(e.type, e.book.id, e.book.available) for e in missed] == [
        (Event.UPDATED, b.id, False),
        (Event.UPDATED, b.id, True),
        (Event.CREATED, c.id, True),
        (Event.DELETED, c.id, True),
    ]
    assert_increasing([*missed, created_d], created_b.revision)
    assert (created_d.type, created_d.book) == (Event.CREATED, d)


async def test_resume_from_snapshot_revision_sends_no_snapshot(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        await add_book(client)
        first = watch(client, 0)
        (head, *_) = await next_events(first, await live_book_count(client))
        await aclose(first)
        resumed = watch(client, head.revision)
        book = await add_book(client)
        (only,) = await next_events(resumed, 1)
        await aclose(resumed)
    assert (only.type, only.book.id) == (Event.CREATED, book.id)
    assert only.revision > head.revision


async def test_every_change_appends_one_event_even_for_many_watchers(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        first = watch(client, 0)
        head = (await next_events(first, await live_book_count(client)))[0].revision
        await aclose(first)
        watchers = [watch(client, head) for _ in range(3)]
        # Each watcher has sent its request once its first read is under way.
        reads = [asyncio.ensure_future(next_events(w, 1)) for w in watchers]
        tag = unique()
        items = [
            pb.ImportBooksRequest(title=f"{tag} {i}", author="A", isbn=isbn13()) for i in range(5)
        ]
        await client.import_books(stream_of(items), headers=LIBRARIAN)
        seen = [(await r) + await next_events(w, 4) for r, w in zip(reads, watchers, strict=True)]
        for w in watchers:
            await aclose(w)
    for events in seen:
        assert [e.book.title for e in events] == [i.title for i in items]
        assert {e.type for e in events} == {Event.CREATED}
        assert_increasing(events, head)
    assert seen[0] == seen[1] == seen[2]


def test_sync_client_watches_and_resumes(server: ServerProcess) -> None:
    with CONNECT_PROTO.sync_client(server.url) as client:
        book = present(client.create_book(book_request(), headers=LIBRARIAN).book)
        snapshot = client.watch_books(pb.WatchBooksRequest(), timeout_ms=STREAM_TIMEOUT_MS)
        events = (present(r.event) for r in snapshot)
        found = next(e for e in events if present(e.book).id == book.id)
        snapshot.close()  # type: ignore[attr-defined]
        client.delete_book(pb.DeleteBookRequest(id=book.id), headers=LIBRARIAN)
        resumed = client.watch_books(
            pb.WatchBooksRequest(since_revision=found.revision), timeout_ms=STREAM_TIMEOUT_MS
        )
        deleted = present(next(resumed).event)
        resumed.close()  # type: ignore[attr-defined]
    assert found.type == Event.CREATED
    assert (deleted.type, present(deleted.book).id) == (Event.DELETED, book.id)
    assert deleted.revision > found.revision


@over_all_wires
@pytest.mark.parametrize(
    ("since", "code"),
    [
        (lambda head: head + 1, Code.OUT_OF_RANGE),
        (lambda head: 2**63 - 1, Code.OUT_OF_RANGE),
        (lambda head: -1, Code.INVALID_ARGUMENT),
    ],
    ids=["beyond head", "int64 max", "negative"],
)
async def test_bad_since_revision(
    server: ServerProcess, wire: Wire, since: Callable[[int], int], code: Code
) -> None:
    async with wire.client(server.url) as client:
        await add_book(client)
        first = watch(client, 0)
        head = (await next_events(first, 1))[0].revision
        await aclose(first)
        with pytest.raises(ConnectError) as refused:
            await next_events(watch(client, since(head)), 1)
    assert refused.value.code is code


async def test_watchers_past_the_cap_get_unavailable(
    server_factory: Callable[..., ServerProcess],
) -> None:
    capped = server_factory(env={"LIBRARY_MAX_WATCHERS": "1"})
    async with CONNECT_PROTO.client(capped.url) as client:
        book = await add_book(client)
        first = watch(client, 0)
        (seen,) = await next_events(first, 1)
        with pytest.raises(ConnectError) as refused:
            await next_events(watch(client, seen.revision), 1)
        await aclose(first)
        # The slot is free again once the server has seen the first stream go.
        async with asyncio.timeout(10):
            while True:
                try:
                    (again,) = await next_events(watch(client, 0), 1)
                    break
                except ConnectError as e:
                    if e.code is not Code.UNAVAILABLE:
                        raise
                    await asyncio.sleep(0.05)
    assert refused.value.code is Code.UNAVAILABLE
    assert "limit" in refused.value.message
    assert seen.book == again.book == book
