"""ISBN-10 and ISBN-13 validation and normalization."""

from __future__ import annotations

import pytest

from server.domain.errors import InvalidArgument
from server.domain.isbn import normalize_isbn


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("9780306406157", "9780306406157"),
        ("978-0-306-40615-7", "9780306406157"),
        ("978 0 306 40615 7", "9780306406157"),
        (" 978-0306406157 ", "9780306406157"),
        ("0306406152", "0306406152"),
        ("0-306-40615-2", "0306406152"),
        ("080442957X", "080442957X"),
        ("0-8044-2957-x", "080442957X"),
        ("9791234567896", "9791234567896"),
    ],
)
def test_valid_isbns_are_normalized(raw: str, normalized: str) -> None:
    assert normalize_isbn(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("9780306406158", "check digit"),
        ("0306406153", "check digit"),
        ("0804429579", "check digit"),
        ("978030640615", "ISBN-10 or ISBN-13"),
        ("97803064061577", "ISBN-10 or ISBN-13"),
        ("030640615", "ISBN-10 or ISBN-13"),
        ("", "ISBN-10 or ISBN-13"),
        ("978030640615X", "ISBN-10 or ISBN-13"),
        ("X306406152", "ISBN-10 or ISBN-13"),
        ("978_0306406157", "ISBN-10 or ISBN-13"),
        ("978030640615\uff17", "ISBN-10 or ISBN-13"),  # fullwidth 7
        ("abcdefghij", "ISBN-10 or ISBN-13"),
    ],
)
def test_invalid_isbns_are_refused(raw: str, complaint: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        normalize_isbn(raw)
    assert complaint in refused.value.message
    assert repr(raw) in refused.value.message
