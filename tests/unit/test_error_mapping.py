"""Domain errors map to Connect codes through their class hierarchy, with bounded messages."""

from __future__ import annotations

from connectrpc.code import Code

from server.domain import errors
from server.rpc.errors import to_connect_error


class BookGone(errors.NotFound):
    """A more specific NotFound, as a later change might add."""


def test_a_subclass_maps_to_its_parents_code() -> None:
    assert to_connect_error(BookGone("book 7 is gone")).code is Code.NOT_FOUND
    assert to_connect_error(errors.Unavailable("later")).code is Code.UNAVAILABLE


def test_a_long_message_is_cut() -> None:
    mapped = to_connect_error(errors.InvalidArgument("x" * 1_000_000))
    assert mapped.code is Code.INVALID_ARGUMENT
    assert len(mapped.message) < 400


def test_an_excerpt_says_how_long_the_input_was() -> None:
    assert errors.excerpt("short") == "'short'"
    assert errors.excerpt("9" * 1000) == f"'{'9' * 40}'… (1000 characters)"


def test_anything_else_is_internal_without_details() -> None:
    mapped = to_connect_error(KeyError("secret"))
    assert mapped.code is Code.INTERNAL
    assert "secret" not in mapped.message
