"""The domain's port to persistence: the interface every storage backend implements.

Storage owns transactions: each write method is atomic and appends its
BookEvent in the same transaction, so the log and the catalogue never
disagree. Broken rules surface as domain errors; storage knows nothing of RPC.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from typing import Protocol

from server.domain.models import (
    Book,
    BookEvent,
    BookFilter,
    Loan,
    Member,
    NewBook,
    Role,
)

SnapshotPages = AsyncGenerator[tuple[int, Sequence[Book]], None]
"""A snapshot's pages: (its revision, up to a page of books), in id order."""


class Storage(Protocol):
    """Books, loans, members and the event log."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def signing_key(self) -> bytes:
        """A secret shared by every process on this database (signs page tokens)."""

    async def get_book(self, book_id: int) -> Book | None:
        """The book with ``book_id``, or None."""

    async def list_books(self, where: BookFilter, after_id: int, limit: int) -> Sequence[Book]:
        """Up to ``limit`` matching books with id > ``after_id``, by id."""

    async def count_books(self, where: BookFilter) -> int:
        """How many books match."""

    async def create_book(self, book: NewBook, now: datetime) -> Book:
        """Insert a book and its CREATED event; AlreadyExists on a known ISBN."""

    async def delete_book(self, book_id: int, now: datetime) -> Book:
        """Delete a book and append DELETED; NotFound, or FailedPrecondition while on loan."""

    async def checkout_book(
        self, book_id: int, member_id: str, now: datetime, due: datetime
    ) -> tuple[Book, Loan]:
        """Open a loan and append UPDATED; exactly one concurrent caller wins.

        NotFound for an unknown book, FailedPrecondition when it is on loan.
        """

    async def return_book(
        self, book_id: int, borrower: str | None, now: datetime
    ) -> tuple[Book, Loan]:
        """Close the open loan and append UPDATED.

        ``borrower`` None lets any loan be closed; otherwise a loan held by
        someone else is PermissionDenied. NotFound, or FailedPrecondition when
        the book is not on loan.
        """

    async def list_loans(
        self, member_id: str | None, active_only: bool, after_id: int, limit: int
    ) -> Sequence[Loan]:
        """Loans with id > ``after_id`` by id; ``member_id`` None means everyone's."""

    async def create_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Member:
        """Insert a member; AlreadyExists on a taken name."""

    async def put_member(self, name: str, role: Role, token_hash: str, now: datetime) -> Member:
        """Create or update the member called ``name`` so it has this role and token."""

    async def member_by_token_hash(self, token_hash: str) -> Member | None:
        """The member a token hash belongs to, or None."""

    async def set_token_hash(self, name: str, token_hash: str) -> Member | None:
        """Give the member called ``name`` this token hash; None if there is no such member."""

    @property
    def committed_head(self) -> int:
        """The newest revision this process knows is committed, without asking the database.

        Its own commits count at once; other processes' once a wake-up (NOTIFY,
        or SQLite's head poll while anyone waits) has told it.
        """

    @property
    def pool_usage(self) -> tuple[int, int] | None:
        """Database connections open and lent out now, for metrics; None without a pool."""

    async def head_revision(self) -> int:
        """The newest committed revision of the event log (0 when empty)."""

    def snapshot_pages(self, page_size: int) -> SnapshotPages:
        """Every live book as of one revision, ``page_size`` at a time, by id.

        Each item is (that revision, a page); at least one item, even for an
        empty catalogue. Every page comes from one consistent snapshot, read off
        the event loop, and only one page is held at a time.
        """

    async def events_after(self, revision: int, limit: int) -> Sequence[BookEvent]:
        """Up to ``limit`` events with revision > ``revision``, in revision order.

        OutOfRange when events after ``revision`` have been pruned or
        ``revision`` is beyond the head.
        """

    def recent_events_after(self, revision: int, limit: int) -> Sequence[BookEvent]:
        """Up to ``limit`` events right after ``revision`` that this process committed itself.

        From memory, without asking the database: as many as follow ``revision``
        with no gap, so none when revision + 1 was not this process's own (another
        process's commit comes between, or it is no longer kept). The event hub
        reads the log only when this has nothing.
        """

    async def wait_for_events(self, revision: int, max_wait: float) -> None:
        """Return once an event after ``revision`` may exist, or after ``max_wait`` seconds."""
