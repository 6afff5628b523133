"""The search rule every backend applies: case-insensitive text, hyphen-blind ISBNs."""

from __future__ import annotations

import pytest

from server.domain.search import needles, search_text

BOOK = ("Design Patterns: Straße-Edition", "Erich Gamma", "9780201633610")
ISBN10 = ("Old Print", "Anon", "080442957X")


def matches(book: tuple[str, str, str], query: str) -> bool:
    """What the storages' SQL computes for one book."""
    found = needles(query)
    return (
        found is None
        or found.text in search_text(*book)
        or (found.isbn is not None and found.isbn in book[2])
    )


@pytest.mark.parametrize(
    ("book", "query"),
    [
        (BOOK, ""),
        (BOOK, "design"),
        (BOOK, "GAMMA"),
        (BOOK, "strasse-edition"),
        (BOOK, "978-0-201"),
        (BOOK, "978 0201 63361"),
        (BOOK, "0201633610"),
        (ISBN10, "0-8044-2957-x"),
    ],
)
def test_a_book_matches(book: tuple[str, str, str], query: str) -> None:
    assert matches(book, query)


@pytest.mark.parametrize(
    ("book", "query"),
    [
        (BOOK, "patterns erich"),
        (BOOK, "978-1"),
        (BOOK, "978-0-201-a"),
    ],
)
def test_a_book_does_not_match(book: tuple[str, str, str], query: str) -> None:
    assert not matches(book, query)


def test_only_isbn_like_queries_have_an_isbn_needle() -> None:
    assert needles("978-0-201") == ("978-0-201", "9780201")
    assert needles("0-8044-2957-x") == ("0-8044-2957-x", "080442957X")
    assert needles("Gamma") == ("gamma", None)
    assert needles("- -") == ("- -", None)
