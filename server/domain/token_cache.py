"""A per-process cache of who holds a bearer token, trusted for a bounded time.

Every call that needs a signed-in caller would otherwise look its token up in
the database. Tokens change from other processes (``library revoke-token``,
``reissue-token``) with nothing to tell this one, so the rule is a time bound:
an answer is trusted for at most ``ttl`` seconds counted from *before* the
lookup that produced it began. The lookup's read therefore started after that
moment, so any change it did not see was committed later, and a token changed
at time C is honoured by every call that starts at C + ``ttl`` or later. The
bound is elapsed time, so it holds for every process on every host alike (up
to their clocks' rates). Changes made through this process (``forget_all``)
count at once.

Only what the database holds is kept: entries are keyed by the token's hash,
never the token. Unknown tokens are not cached (a new token works at once),
and at most ``max_tokens`` entries are kept, the oldest going first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from server.domain.models import Member

MAX_TOKENS = 10_000
"""Entries a process keeps by default: a few MB at most, whatever the callers send."""


class TokenCache:
    """Members by token hash, each trusted for ``ttl`` seconds; ``ttl`` 0 keeps nothing."""

    def __init__(
        self,
        ttl: float,
        max_tokens: int = MAX_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_tokens = max_tokens
        self._clock = clock
        # Insertion order is (nearly) expiry order: each put re-inserts its key.
        self._members: dict[str, tuple[float, Member]] = {}
        self._generation = 0

    def get(self, token_hash: str) -> Member | None:
        """The member holding the token, or None when not cached or no longer trusted."""
        entry = self._members.get(token_hash)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._members[token_hash]
            return None
        return entry[1]

    def read_through(self, token_hash: str) -> Callable[[Member], None]:
        """Call before looking the token up; the result caches what that lookup found.

        The entry's time starts now, before the read, and a ``forget_all`` in
        between discards it.
        """
        expires = self._clock() + self._ttl
        generation = self._generation

        def put(member: Member) -> None:
            if generation != self._generation or self._ttl <= 0 or self._max_tokens <= 0:
                return
            self._members.pop(token_hash, None)
            while len(self._members) >= self._max_tokens:
                del self._members[next(iter(self._members))]
            self._members[token_hash] = (expires, member)

        return put

    def forget_all(self) -> None:
        """Drop every entry, and lookups in flight: a token changed through this process."""
        self._members.clear()
        self._generation += 1
