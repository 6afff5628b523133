"""Page sizes and signed, scoped page tokens."""

from __future__ import annotations

import base64

import pytest

from server.domain.errors import InvalidArgument
from server.domain.paging import DEFAULT_PAGE_SIZE, PageTokens, page_size

KEY = b"k" * 32


@pytest.mark.parametrize(
    ("requested", "size"),
    [
        (0, DEFAULT_PAGE_SIZE),
        (1, 1),
        (50, 50),
        (999, 999),
        (1000, 1000),
        (1001, 1000),
        (2**31 - 1, 1000),
    ],
)
def test_page_size_rules(requested: int, size: int) -> None:
    assert page_size(requested) == size


def test_negative_page_size_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="page_size"):
        page_size(-1)


@pytest.mark.parametrize("after_id", [1, 42, 2**62])
def test_token_round_trip(after_id: int) -> None:
    tokens = PageTokens(KEY)
    assert tokens.after_id("books:q:False", tokens.issue("books:q:False", after_id)) == after_id


def test_empty_token_is_the_first_page() -> None:
    assert PageTokens(KEY).after_id("any", "") == 0


def test_token_is_opaque_and_url_safe() -> None:
    token = PageTokens(KEY).issue("books:secret query:False", 7)
    assert "secret" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_token_for_another_scope_is_refused() -> None:
    tokens = PageTokens(KEY)
    token = tokens.issue("books:a:False", 7)
    with pytest.raises(InvalidArgument, match="other filters"):
        tokens.after_id("books:b:False", token)


def test_token_signed_with_another_key_is_refused() -> None:
    token = PageTokens(b"x" * 32).issue("s", 7)
    with pytest.raises(InvalidArgument, match="not issued"):
        PageTokens(KEY).after_id("s", token)


def test_tampered_payload_is_refused() -> None:
    tokens = PageTokens(KEY)
    payload, signature = tokens.issue("s", 7).split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    forged = base64.urlsafe_b64encode(raw.replace(b",7]", b",8]")).decode().rstrip("=")
    with pytest.raises(InvalidArgument, match="not issued"):
        tokens.after_id("s", f"{forged}.{signature}")


def test_tampered_signature_is_refused() -> None:
    tokens = PageTokens(KEY)
    payload, signature = tokens.issue("s", 7).split(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    with pytest.raises(InvalidArgument, match="not issued"):
        tokens.after_id("s", f"{payload}.{flipped}")


@pytest.mark.parametrize(
    "garbage", ["x", "a.b.c", "!!!.???", "é.é", ".", "abc.", "....", "eyJ.AAAA"]
)
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        PageTokens(KEY).after_id("s", garbage)
