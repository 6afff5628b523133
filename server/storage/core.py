"""The Storage interface, implemented once over a database adapter's three hooks.

Each method hands one operation of ``operations`` to the adapter, which runs
it: ``_read`` outside any write, ``_write`` in a transaction of its own
(answered once durable), ``_snapshot`` for the pages of one read transaction.
The adapters (``sqlite.SQLiteStorage``, ``postgres.PostgresStorage``) hold only
connections (``open``, ``close``, ``pool_usage``), their dialect, locking,
wake-ups (``wait_for_events``) and the translation of outages into
Unavailable, which each hook does for every operation it runs.

Why a base class and not an adapter object passed in: the adapters are the
storages the app and tests construct (with their own options), and a subclass
that fills in three hooks is the least code that keeps them so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol, TypeVar

from server.domain.models import Book, BookEvent, BookFilter, Loan, Member, NewBook, Role
from server.domain.storage import SnapshotPages
from server.storage.head import Head
from server.storage.operations import Op, Operations, Write

R = TypeVar("R")

RECENT_EVENTS = 1_024
"""Events of its own commits a process keeps in memory for its event hub."""


class Run(Protocol):
    """Runs one operation in a snapshot's read transaction."""

    def __call__(self, op: Op[R], /) -> Awaitable[R]:
        """The operation's answer."""
        ...


class SqlStorage:
    """Books, loans, members and the event log in a SQL database, whichever the adapter."""

    def __init__(self, ops: Operations, known_head: Head) -> None:
        self._ops = ops
        self._known_head = known_head
        # Its own committed events by revision, oldest first (about: see _hand_over).
        self._recent: dict[int, BookEvent] = {}

    async def _read(self, op: Op[R]) -> R:
        """Run a read on any connection."""
        raise NotImplementedError

    async def _write(self, op: Write[R]) -> R:
        """Run a write in its own transaction (or savepoint); its answer once committed.

        Its writer hands the event it appended to ``_hand_over`` once it is durable.
        """
        raise NotImplementedError

    def _hand_over(self, answers: list[tuple[object, BookEvent | None]]) -> None:
        """Keep a committed batch's events for ``recent_events_after``, and wake waiters.

        The writers call this with a batch's answers in commit order once it is
        durable and before any of its callers is answered, so the hub, woken by
        the first event, finds the batch's events in memory.
        """
        recent = self._recent
        newest = 0
        for _, event in answers:
            if event is None:
                continue
            recent[event.revision] = event
            if len(recent) > RECENT_EVENTS:
                del recent[next(iter(recent))]
            newest = event.revision
        self._known_head.advance(newest)

    def _snapshot(self) -> AbstractAsyncContextManager[Run]:
        """A read transaction of its own, for a snapshot's pages."""
        raise NotImplementedError

    async def signing_key(self) -> bytes:
        """The page-token key, created with the database."""
        return await self._read(self._ops.signing_key())

    async def get_book(self, book_id: int) -> Book | None:
        """The book, or None."""
        return await self._read(self._ops.get_book(book_id))

    async def list_books(self, where: BookFilter, after_id: int, limit: int) -> Sequence[Book]:
        """Matching books after ``after_id``, by id."""
        return await self._read(self._ops.list_books(where, after_id, limit))

    async def count_books(self, where: BookFilter) -> int:
        """How many books match."""
        return await self._read(self._ops.count_books(where))

    async def create_book(self, book: NewBook, now: datetime) -> Book:
        """Insert the book and its CREATED event."""
        return await self._write(self._ops.create_book(book, now))

    async def delete_book(self, book_id: int, now: datetime) -> Book:
        """Delete the book unless it is on loan."""
        return await self._write(self._ops.delete_book(book_id, now))

    async def checkout_book(
        self, book_id: int, member_id: str, now: datetime, due: datetime
    ) -> tuple[Book, Loan]:
        """Open a loan; the partial unique index refuses a second open one."""
        return await self._write(self._ops.checkout_book(book_id, member_id, now, due))

    async def return_book(
        self, book_id: int, borrower: str | None, now: datetime
    ) -> tuple[Book, Loan]:
        """Close the book's open loan."""
        return await self._write(self._ops.return_book(book_id, borrower, now))

    async def list_loans(
        self, member_id: str | None, active_only: bool, after_id: int, limit: int
    ) -> Sequence[Loan]:
        """Loans after ``after_id``, by id."""
        return await self._read(self._ops.list_loans(member_id, active_only, after_id, limit))

    async def create_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Member:
        """Insert a member with a fresh id."""
        return await self._write(self._ops.create_member(name, role, token_hash, now))

    async def put_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Member:
        """Create ``name`` or give it this role and token."""
        return await self._write(self._ops.put_member(name, role, token_hash, now))

    async def set_token_hash(self, name: str, token_hash: str) -> Member | None:
        """Replace the member's token hash."""
        return await self._write(self._ops.set_token_hash(name, token_hash))

    async def member_by_token_hash(self, token_hash: str) -> Member | None:
        """The token's member, or None."""
        return await self._read(self._ops.member_by_token_hash(token_hash))

    @property
    def committed_head(self) -> int:
        """Its own commits at once; other processes' once a wake-up has told it."""
        return self._known_head.head

    async def head_revision(self) -> int:
        """The newest committed revision."""
        return await self._read(self._ops.head_revision())

    async def snapshot_pages(self, page_size: int) -> SnapshotPages:
        """Pages of one read transaction, one page held at a time."""
        async with self._snapshot() as run:
            head = await run(self._ops.begin_snapshot())
            after = 0
            while True:
                books = await run(self._ops.books_after(after, page_size))
                yield head, books
                if len(books) < page_size:
                    return
                after = books[-1].id

    async def events_after(self, revision: int, limit: int) -> Sequence[BookEvent]:
        """Events after ``revision``; OutOfRange when the log cannot continue from there."""
        return await self._read(self._ops.events_after(revision, limit))

    def recent_events_after(self, revision: int, limit: int) -> Sequence[BookEvent]:
        """This process's own events right after ``revision``, from memory, up to the first gap.

        Those up to ``revision`` are dropped: the one reader that asks has them.
        """
        recent = self._recent
        while recent:
            oldest = next(iter(recent))
            if oldest > revision:
                break
            del recent[oldest]
        events: list[BookEvent] = []
        following = recent.get(revision + 1)
        while following is not None and len(events) < limit:
            events.append(following)
            following = recent.get(following.revision + 1)
        return events
