"""Bearer tokens and who may call what."""

from __future__ import annotations

import enum
import hashlib
import secrets

from server.domain.errors import PermissionDenied, Unauthenticated
from server.domain.models import Member, Role

_TOKEN_PREFIX = "lib_"


class Access(enum.Enum):
    """Who may call an operation."""

    ANYONE = "anyone"
    SIGNED_IN = "signed in"
    LIBRARIAN = "librarian"


def new_token() -> str:
    """A fresh random bearer token, shown to its owner once."""
    return _TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What storage keeps of a token.

    Tokens carry 256 random bits, so a fast hash is enough: there is nothing to
    brute-force, and lookups stay cheap on every call.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def revoked_token_hash() -> str:
    """A stored token hash no token can match (SHA-256 hex has no colon), unique per member."""
    return "revoked:" + secrets.token_hex(16)


def authorize(caller: Member | None, access: Access) -> None:
    """Raise unless ``caller`` has ``access``."""
    if access is Access.ANYONE:
        return
    if caller is None:
        raise Unauthenticated("this call needs a token: send 'Authorization: Bearer <token>'")
    if access is Access.LIBRARIAN and caller.role is not Role.LIBRARIAN:
        raise PermissionDenied("only a librarian may do this")
