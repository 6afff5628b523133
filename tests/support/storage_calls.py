"""One call of every Storage operation, for tests that need each to behave alike (outages)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime, timedelta

from server.domain.models import BookFilter, NewBook, Role
from server.domain.storage import Storage
from tests.support.data import isbn13

Call = Callable[[Storage], Awaitable[object]]

# Not operations on the data: opening, closing, waiting, and what the process knows already.
NOT_OPERATIONS = frozenset(
    (
        "open",
        "close",
        "wait_for_events",
        "committed_head",
        "pool_usage",
        "recent_events_after",
    )
)


async def _first_page(storage: Storage) -> object:
    async with aclosing(storage.snapshot_pages(10)) as pages:
        return await anext(pages)


def _now() -> datetime:
    return datetime.now(UTC)


READS: dict[str, Call] = {
    "signing_key": lambda s: s.signing_key(),
    "get_book": lambda s: s.get_book(1),
    "list_books": lambda s: s.list_books(BookFilter("a", True), 0, 10),
    "count_books": lambda s: s.count_books(BookFilter("978", False)),
    "list_loans": lambda s: s.list_loans(None, True, 0, 10),
    "member_by_token_hash": lambda s: s.member_by_token_hash("hash"),
    "head_revision": lambda s: s.head_revision(),
    "events_after": lambda s: s.events_after(0, 10),
    "snapshot_pages": _first_page,
}
"""Every read, each given ids that may or may not exist."""

WRITES: dict[str, Call] = {
    "create_book": lambda s: s.create_book(NewBook("T", "A", isbn13(), 2000), _now()),
    "delete_book": lambda s: s.delete_book(1, _now()),
    "checkout_book": lambda s: s.checkout_book(1, "m", _now(), _now() + timedelta(days=1)),
    "return_book": lambda s: s.return_book(1, None, _now()),
    "create_member": lambda s: s.create_member("new", Role.MEMBER, "new-hash", _now()),
    "put_member": lambda s: s.put_member("put", Role.MEMBER, "put-hash", _now()),
    "set_token_hash": lambda s: s.set_token_hash("put", "other-hash"),
}
"""Every write."""


def operations() -> set[str]:
    """The names of every operation the Storage protocol declares."""
    declared = {name for name, _ in inspect.getmembers(Storage) if not name.startswith("_")}
    return declared - NOT_OPERATIONS
