"""Domain errors: each names a rule that was broken, and the RPC layer maps it to a code."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule violation; the message is meant for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """The request itself is wrong, whatever the state of the library."""


class NotFound(DomainError):
    """The named record does not exist."""


class AlreadyExists(DomainError):
    """A record with the same unique key exists already."""


class FailedPrecondition(DomainError):
    """The library is not in a state that allows the operation."""


class Unauthenticated(DomainError):
    """The caller did not present a valid token."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""


class OutOfRange(DomainError):
    """The request points past what the library keeps."""


class Unavailable(DomainError):
    """The database cannot serve the request right now; the same request may succeed later."""


EXCERPT_CHARS = 40
"""How much of a client's input an error message quotes."""
MAX_MESSAGE_CHARS = 300
"""The longest error message a client is sent (grpc-message, Connect JSON), before escaping."""


def excerpt(value: str, limit: int = EXCERPT_CHARS) -> str:
    """``value`` quoted, cut to ``limit`` characters (and then marked as cut)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def bounded_message(message: str) -> str:
    """``message`` cut to MAX_MESSAGE_CHARS, so no error grows with the input."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}… (cut)"
