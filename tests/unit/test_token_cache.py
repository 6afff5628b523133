"""The token cache trusts a lookup for a bounded time, counted from before the lookup began."""

from __future__ import annotations

from datetime import UTC, datetime

from server.domain.models import Member, Role
from server.domain.token_cache import TokenCache

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ADA = Member("a", "Ada", Role.LIBRARIAN, NOW)
BOB = Member("b", "Bob", Role.MEMBER, NOW)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_trusted_until_ttl_after_its_lookup_began() -> None:
    clock = Clock()
    cache = TokenCache(1.0, clock=clock)
    put = cache.read_through("hash-a")
    clock.now += 0.4  # the lookup itself took this long
    put(ADA)
    assert cache.get("hash-a") == ADA
    clock.now += 0.59
    assert cache.get("hash-a") == ADA
    # 1.0 s after the lookup began, not after it ended: look it up again.
    clock.now += 0.01
    assert cache.get("hash-a") is None


def test_forget_all_drops_entries_and_lookups_in_flight() -> None:
    cache = TokenCache(1.0, clock=Clock())
    cache.read_through("hash-a")(ADA)
    in_flight = cache.read_through("hash-b")
    cache.forget_all()
    in_flight(BOB)  # it may have read the token before this process changed it
    assert (cache.get("hash-a"), cache.get("hash-b")) == (None, None)
    cache.read_through("hash-b")(BOB)
    assert cache.get("hash-b") == BOB


def test_at_most_max_tokens_are_kept_oldest_first() -> None:
    cache = TokenCache(1.0, max_tokens=2, clock=Clock())
    for token_hash, member in (("hash-a", ADA), ("hash-b", BOB), ("hash-a", ADA), ("hash-c", BOB)):
        cache.read_through(token_hash)(member)
    # hash-a was looked up again after hash-b, so hash-b was the oldest.
    assert [cache.get(h) is not None for h in ("hash-a", "hash-b", "hash-c")] == [
        True,
        False,
        True,
    ]


def test_ttl_zero_keeps_nothing() -> None:
    cache = TokenCache(0.0, clock=Clock())
    cache.read_through("hash-a")(ADA)
    assert cache.get("hash-a") is None
