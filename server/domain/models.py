"""The library's records, as the domain and storage exchange them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Role(enum.IntEnum):
    """What a member may do; values match the ``library.v1.Role`` enum."""

    MEMBER = 1
    LIBRARIAN = 2


class EventType(enum.IntEnum):
    """What happened to a book; values match the ``library.v1.EventType`` enum."""

    CREATED = 1
    UPDATED = 2
    DELETED = 3


@dataclass(frozen=True, slots=True)
class NewBook:
    """A validated book, ready to be stored."""

    title: str
    author: str
    isbn: str
    published_year: int


@dataclass(frozen=True, slots=True)
class Book:
    """A book in the catalogue; ``available`` is true when it has no open loan."""

    id: int
    title: str
    author: str
    isbn: str
    published_year: int
    available: bool
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True, slots=True)
class Loan:
    """One checkout; ``return_time`` is None while the loan is open."""

    id: int
    book_id: int
    member_id: str
    checkout_time: datetime
    due_time: datetime
    return_time: datetime | None


@dataclass(frozen=True, slots=True)
class Member:
    """Someone who may sign in with a bearer token."""

    id: str
    name: str
    role: Role
    create_time: datetime


@dataclass(frozen=True, slots=True)
class BookEvent:
    """One entry of the change log: the book as it stood after the change."""

    revision: int
    type: EventType
    book: Book


@dataclass(frozen=True, slots=True)
class BookFilter:
    """Which books a listing or search matches."""

    query: str = ""
    available_only: bool = False
