"""Roles: who may call an operation, and token handling."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.domain.auth import Access, authorize, hash_token, new_token
from server.domain.errors import PermissionDenied, Unauthenticated
from server.domain.models import Member, Role

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MEMBER = Member("m", "Mia", Role.MEMBER, NOW)
LIBRARIAN = Member("l", "Lee", Role.LIBRARIAN, NOW)


@pytest.mark.parametrize(
    ("caller", "access", "refusal"),
    [
        (None, Access.ANYONE, None),
        (MEMBER, Access.ANYONE, None),
        (LIBRARIAN, Access.ANYONE, None),
        (None, Access.SIGNED_IN, Unauthenticated),
        (MEMBER, Access.SIGNED_IN, None),
        (LIBRARIAN, Access.SIGNED_IN, None),
        (None, Access.LIBRARIAN, Unauthenticated),
        (MEMBER, Access.LIBRARIAN, PermissionDenied),
        (LIBRARIAN, Access.LIBRARIAN, None),
    ],
)
def test_authorize(caller: Member | None, access: Access, refusal: type[Exception] | None) -> None:
    if refusal is None:
        authorize(caller, access)
        return
    with pytest.raises(refusal):
        authorize(caller, access)


def test_tokens_are_random_and_stored_as_a_hash() -> None:
    first, second = new_token(), new_token()
    assert first != second
    assert first.startswith("lib_")
    assert len(first) > 40
    assert hash_token(first) == hash_token(first)
    assert hash_token(first) != hash_token(second)
    assert first not in hash_token(first)
