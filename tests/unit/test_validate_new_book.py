"""A new book's fields: required, trimmed, bounded, and its ISBN normalized."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

import pytest

from server.domain.errors import InvalidArgument
from server.domain.library import validate_new_book
from server.domain.models import NewBook

NEXT_YEAR = datetime.now(UTC).year + 1


def test_fields_are_trimmed_and_isbn_normalized() -> None:
    book = validate_new_book("  Dune ", " Frank Herbert ", "978-0-306-40615-7", 1965)
    assert book == NewBook("Dune", "Frank Herbert", "9780306406157", 1965)


@pytest.mark.parametrize("year", [0, 1450, 2000, NEXT_YEAR])
def test_years_accepted(year: int) -> None:
    assert validate_new_book("T", "A", "0306406152", year).published_year == year


@pytest.mark.parametrize(
    ("title", "author", "isbn", "year", "complaint"),
    [
        ("", "A", "0306406152", 0, "title is required"),
        ("  ", "A", "0306406152", 0, "title is required"),
        ("T", "", "0306406152", 0, "author is required"),
        ("T", "A", "", 0, "isbn is required"),
        ("T", "A", "  ", 0, "isbn is required"),
        ("T", "A", "0306406153", 0, "check digit"),
        ("T", "A", "0306406152", 1449, "published_year"),
        ("T", "A", "0306406152", NEXT_YEAR + 1, "published_year"),
        ("T", "A", "0306406152", -5, "published_year"),
        ("x" * 501, "A", "0306406152", 0, "limited"),
        ("T", "x" * 501, "0306406152", 0, "limited"),
        ("a\x00b", "A", "0306406152", 0, "control characters"),
        ("T", "Ann\tAuthor", "0306406152", 0, "control characters"),
    ],
)
def test_bad_books_are_refused(
    title: str, author: str, isbn: str, year: int, complaint: str
) -> None:
    with pytest.raises(InvalidArgument, match=complaint):
        validate_new_book(title, author, isbn, year)


def test_control_characters_are_unicode_category_cc() -> None:
    # The check is a character range: it must refuse exactly what Unicode calls a control.
    for point in range(0x10000):
        character = chr(point)
        try:
            validate_new_book(f"a{character}b", "A", "0306406152", 0)
            refused = False
        except InvalidArgument as e:
            refused = "control characters" in e.message
        assert refused == (unicodedata.category(character) == "Cc"), hex(point)
