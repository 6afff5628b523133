"""What a search query matches, defined once: the storages apply it in SQL.

A book matches when its title, author or ISBN contains the query, case-insensitively,
or when the query, without hyphens and spaces, is part of its (normalized) ISBN. The
page's own filter for live changes (web/src/search.ts) mirrors this rule.
"""

from __future__ import annotations

from typing import NamedTuple

from server.domain.isbn import compact_isbn

_ISBN_CHARS = frozenset("0123456789X")


class Needles(NamedTuple):
    """The substrings a matching book contains at least one of."""

    text: str
    """The case-folded query, sought in ``search_text``."""
    isbn: str | None
    """The query as an ISBN fragment, sought in the stored ISBN; None if it cannot be one."""


def search_text(title: str, author: str, isbn: str) -> str:
    """What ``Needles.text`` is sought in, case-folded: matching is case-insensitive in any script.

    The fields are joined by a newline, so a match never spans two: the library answers a query
    holding a control character with no books before any storage sees it.
    """
    return "\n".join((title, author, isbn)).casefold()


def needles(query: str) -> Needles | None:
    """What books matching ``query`` contain, or None to match all.

    The ISBN needle lets '978-0-13' find the normalized '978013...'.
    """
    if not query:
        return None
    compact = compact_isbn(query)
    return Needles(query.casefold(), compact if compact and set(compact) <= _ISBN_CHARS else None)
