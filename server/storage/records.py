"""Conversions between stored rows and domain records, and log rules, shared by every backend."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from server.domain.errors import OutOfRange
from server.domain.models import (
    Book,
    BookEvent,
    EventType,
    Loan,
    Member,
    Role,
)

PRUNE_EVERY = 256
"""Every backend prunes the event log when a revision is a multiple of this."""


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch: an exact, portable integer column."""
    return round(moment.timestamp() * 1_000_000)


def from_micros(micros: int) -> datetime:
    """The inverse of ``to_micros``, in UTC."""
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def book_from_row(row: Sequence[Any]) -> Book:
    """A book from (id, title, author, isbn, published_year, create, update, available)."""
    return Book(
        id=row[0],
        title=row[1],
        author=row[2],
        isbn=row[3],
        published_year=row[4],
        create_time=from_micros(row[5]),
        update_time=from_micros(row[6]),
        available=bool(row[7]),
    )


def loan_from_row(row: Sequence[Any]) -> Loan:
    """A loan from (id, book_id, member_id, checkout, due, return)."""
    return Loan(
        id=row[0],
        book_id=row[1],
        member_id=row[2],
        checkout_time=from_micros(row[3]),
        due_time=from_micros(row[4]),
        return_time=None if row[5] is None else from_micros(row[5]),
    )


def member_from_row(row: Sequence[Any]) -> Member:
    """A member from (id, name, role, create)."""
    return Member(id=row[0], name=row[1], role=Role(row[2]), create_time=from_micros(row[3]))


def book_to_json(book: Book) -> str:
    """The book as an event stores it."""
    return json.dumps(
        {
            "id": book.id,
            "title": book.title,
            "author": book.author,
            "isbn": book.isbn,
            "published_year": book.published_year,
            "available": book.available,
            "create_time": to_micros(book.create_time),
            "update_time": to_micros(book.update_time),
        },
        separators=(",", ":"),
    )


def event_from_row(revision: int, event_type: int, book_json: str) -> BookEvent:
    """An event from its stored revision, type and book."""
    data: Mapping[str, Any] = json.loads(book_json)
    book = Book(
        id=data["id"],
        title=data["title"],
        author=data["author"],
        isbn=data["isbn"],
        published_year=data["published_year"],
        available=data["available"],
        create_time=from_micros(data["create_time"]),
        update_time=from_micros(data["update_time"]),
    )
    return BookEvent(revision, EventType(event_type), book)


def check_resume_point(revision: int, head: int, floor: int) -> None:
    """OutOfRange unless the log can continue after ``revision``.

    ``head`` is the newest revision, ``floor`` the newest pruned one.
    """
    if revision > head:
        raise OutOfRange(f"revision {revision} is ahead of the log (head is {head})")
    if revision < floor:
        raise OutOfRange(
            f"events up to revision {floor} are no longer kept; start again from since_revision 0"
        )


def prune_floor(revision: int, retention: int) -> int | None:
    """The newest revision to prune after appending ``revision``, or None to keep the log.

    Pruning runs every ``PRUNE_EVERY`` revisions, never when ``retention`` is 0 (keep all),
    and keeps the newest ``retention`` events.
    """
    if retention and revision % PRUNE_EVERY == 0 and revision > retention:
        return revision - retention
    return None
