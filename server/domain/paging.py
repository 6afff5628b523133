"""Page sizes and opaque, tamper-proof page tokens.

A token carries the last id of the previous page plus a digest of the filter
it was issued for, signed with a key only the server knows, so a token the
server did not issue, or one reused with another filter, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from server.domain.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_SIGNATURE_BYTES = 16


def page_size(requested: int) -> int:
    """Apply the contract's rules: 0 means the default, the cap is MAX_PAGE_SIZE."""
    if requested < 0:
        raise InvalidArgument(f"page_size must not be negative, got {requested}")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


class PageTokens:
    """Issues and checks page tokens with one signing key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, scope: str, after_id: int) -> str:
        """Token for the page that follows ``after_id`` within ``scope``."""
        payload = json.dumps([_digest(scope), after_id], separators=(",", ":")).encode()
        return _b64(payload) + "." + _b64(self._sign(payload))

    def after_id(self, scope: str, token: str) -> int:
        """The id a token resumes after; 0 for the empty token (the first page)."""
        if not token:
            return 0
        try:
            encoded_payload, encoded_signature = token.split(".")
            payload = _unb64(encoded_payload)
            signature = _unb64(encoded_signature)
        except (ValueError, binascii.Error):
            raise InvalidArgument(
                "page_token is malformed; pass a next_page_token unchanged"
            ) from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise InvalidArgument("page_token was not issued by this server")
        token_scope, after_id = json.loads(payload)
        if token_scope != _digest(scope):
            raise InvalidArgument("page_token belongs to a request with other filters")
        return int(after_id)

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def _digest(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
