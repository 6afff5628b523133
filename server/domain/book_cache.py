"""A per-process cache of books for GetBook, kept exact by the event hub.

The hub applies every committed event to it, in revision order. An entry is
served only while the hub has applied everything this process knows to be
committed (its own writes, and other processes' as far as it has noticed
them); otherwise GetBook reads the database. So a process always reads its own
writes, and sees another process's change as soon as it notices it: on
PostgreSQL at its NOTIFY (milliseconds; at most the hub's 1 s re-check if a
notification is lost), on SQLite at the next head poll (0.1 s).
"""

from __future__ import annotations

from collections.abc import Callable

from server.domain.models import Book, BookEvent, EventType


class CachedBook:
    """A cached book, and what the layer above built from it (dropped with it).

    ``answer`` is the layer above's to fill (GetBook's response); it goes with
    the entry, when the book changes or leaves the cache.
    """

    __slots__ = ("answer", "book")

    def __init__(self, book: Book) -> None:
        self.book = book
        self.answer: object = None


class BookCache:
    """Books by id, at most ``max_books`` of them (the oldest entry goes first).

    Each entry has a slot for an answer built from its book (GetBook's
    response), so a hit needs no conversion: the slot goes with the entry,
    when the book changes or leaves the cache.
    """

    def __init__(self, committed_head: Callable[[], int], max_books: int) -> None:
        if max_books < 1:
            raise ValueError(f"a cache holds at least one book, not {max_books}: pass none")
        self._committed_head = committed_head
        self._max_books = max_books
        self._books: dict[int, CachedBook] = {}
        self._applied = 0

    def reset(self, head: int) -> None:
        """Forget everything; the hub follows the log from ``head`` on."""
        self._books.clear()
        self._applied = head

    def apply(self, event: BookEvent) -> None:
        """Bring a cached book up to ``event``, the next one in revision order."""
        self._applied = event.revision
        book = event.book
        if event.type is EventType.DELETED:
            self._books.pop(book.id, None)
        elif book.id in self._books:
            self._books[book.id] = CachedBook(book)

    def get(self, book_id: int) -> Book | None:
        """The cached book, or None when it is not cached or the cache may be behind."""
        entry = self.entry(book_id)
        return None if entry is None else entry.book

    def entry(self, book_id: int) -> CachedBook | None:
        """The cached book with its answer slot, or None as for ``get``."""
        if self._applied < self._committed_head():
            return None
        return self._books.get(book_id)

    def read_through(self) -> Callable[[Book], None]:
        """A way to cache a book just read, unless an event was applied since this call."""
        applied = self._applied

        def put(book: Book) -> None:
            if self._applied != applied:
                return
            if len(self._books) >= self._max_books:
                del self._books[next(iter(self._books))]
            self._books[book.id] = CachedBook(book)

        return put
