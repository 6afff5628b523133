"""The GetBook cache serves only what the hub has brought up to every known commit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from server.domain.book_cache import BookCache
from server.domain.models import Book, BookEvent, EventType

NOW = datetime.now(UTC)
BOOK = Book(1, "Cached", "C", "9780131103627", 2000, True, NOW, NOW)
LENT = replace(BOOK, available=False)


def test_a_book_is_served_only_while_the_hub_is_up_to_every_known_commit() -> None:
    committed = 5
    cache = BookCache(lambda: committed, max_books=10)
    cache.reset(5)
    cache.read_through()(BOOK)
    assert cache.get(BOOK.id) == BOOK
    # This process committed revision 6 (a checkout): until the hub applies it, read the database.
    committed = 6
    assert cache.get(BOOK.id) is None
    cache.apply(BookEvent(6, EventType.UPDATED, LENT))
    assert cache.get(BOOK.id) == LENT
    cache.apply(BookEvent(7, EventType.DELETED, LENT))
    assert cache.get(BOOK.id) is None


def test_a_read_overtaken_by_an_event_is_not_cached() -> None:
    cache = BookCache(lambda: 0, max_books=10)
    put = cache.read_through()
    cache.apply(BookEvent(1, EventType.DELETED, BOOK))
    put(BOOK)  # read before the deletion was applied: caching it would resurrect the book
    assert cache.get(BOOK.id) is None


def test_the_cache_holds_at_most_max_books() -> None:
    cache = BookCache(lambda: 0, max_books=2)
    for book_id in (1, 2, 3):
        cache.read_through()(replace(BOOK, id=book_id))
    assert [cache.get(i) is not None for i in (1, 2, 3)] == [False, True, True]


def test_an_answer_is_kept_beside_its_book_until_the_book_changes() -> None:
    cache = BookCache(lambda: 0, max_books=10)
    cache.read_through()(BOOK)
    cached = cache.entry(BOOK.id)
    assert cached is not None
    assert cached.book is cache.get(BOOK.id)
    assert cached.answer is None
    cached.answer = "answer to the cached book"
    again = cache.entry(BOOK.id)
    assert again is not None
    assert again.answer == "answer to the cached book"
    cache.apply(BookEvent(1, EventType.UPDATED, LENT))
    updated = cache.entry(BOOK.id)
    assert updated is not None
    assert updated.book == LENT
    assert updated.answer is None


def test_an_answer_leaves_with_its_book() -> None:
    cache = BookCache(lambda: 0, max_books=1)
    cache.read_through()(BOOK)
    first = cache.entry(BOOK.id)
    assert first is not None
    first.answer = "first"
    cache.read_through()(replace(BOOK, id=2))
    assert cache.entry(BOOK.id) is None
    cache.read_through()(BOOK)
    back = cache.entry(BOOK.id)
    assert back is not None
    assert back.answer is None


def test_no_entry_while_the_cache_may_be_behind() -> None:
    committed = 0
    cache = BookCache(lambda: committed, max_books=10)
    cache.read_through()(BOOK)
    committed = 1
    assert cache.entry(BOOK.id) is None
    cache.apply(BookEvent(1, EventType.UPDATED, LENT))
    cached = cache.entry(BOOK.id)
    assert cached is not None
    assert cached.book == LENT


def test_a_cache_of_no_books_is_no_cache() -> None:
    with pytest.raises(ValueError, match="pass none"):
        BookCache(lambda: 0, max_books=0)
