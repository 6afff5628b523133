"""Test data: unique, valid ISBNs and books."""

from __future__ import annotations

import itertools
import random

_serial = itertools.count(random.SystemRandom().randrange(10**8))


def isbn13(prefix: str = "979") -> str:
    """A fresh ISBN-13 with a correct check digit, unique within this test run."""
    body = f"{prefix}{next(_serial) % 10**9:09d}"
    total = sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(body))
    return body + str((10 - total % 10) % 10)


def isbn10() -> str:
    """A fresh ISBN-10 with a correct check digit (possibly X)."""
    body = f"{next(_serial) % 10**9:09d}"
    total = sum((10 - i) * int(c) for i, c in enumerate(body))
    check = (11 - total % 11) % 11
    return body + ("X" if check == 10 else str(check))
