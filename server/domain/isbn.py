"""ISBN-10 and ISBN-13 validation and normalization."""

from __future__ import annotations

from server.domain.errors import InvalidArgument, excerpt

_IGNORED = str.maketrans("", "", "- ")


def compact_isbn(raw: str) -> str:
    """``raw`` without the hyphens and spaces ISBNs are written with, upper-case."""
    return raw.translate(_IGNORED).upper()


def normalize_isbn(raw: str) -> str:
    """Return ``raw`` as digits (plus a final X for ISBN-10), or raise InvalidArgument.

    Hyphens and spaces are accepted on input; the check digit must be right.
    """
    isbn = compact_isbn(raw)
    # isascii: str.isdigit() also accepts other scripts' digits, such as fullwidth ones.
    if (
        isbn.isascii()
        and len(isbn) == 10
        and isbn[:9].isdigit()
        and (isbn[9].isdigit() or isbn[9] == "X")
    ):
        if _isbn10_sum(isbn) % 11 != 0:
            raise InvalidArgument(f"isbn {excerpt(raw)} has a wrong check digit")
        return isbn
    if isbn.isascii() and len(isbn) == 13 and isbn.isdigit():
        if _isbn13_sum(isbn) % 10 != 0:
            raise InvalidArgument(f"isbn {excerpt(raw)} has a wrong check digit")
        return isbn
    raise InvalidArgument(
        f"isbn {excerpt(raw)} is not an ISBN-10 or ISBN-13 (10 or 13 digits, hyphens allowed)"
    )


def _isbn10_sum(isbn: str) -> int:
    return sum((10 - i) * (10 if c == "X" else int(c)) for i, c in enumerate(isbn))


def _isbn13_sum(isbn: str) -> int:
    return sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(isbn))
