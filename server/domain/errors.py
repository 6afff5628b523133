"""Domain errors: each names a rule that was broken, and the RPC layer maps it to a code."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True, slots=True)
class MessageBounds:
    """How long an error message may be, and how much client input it quotes."""

    message_chars: int = 300
    """The longest message a client is sent (grpc-message, Connect JSON), before escaping."""
    excerpt_chars: int = 40
    """How much of a client's input a message quotes."""


# Set once per server process, from the settings, before it serves (server/app/asgi.py);
# messages are built deep inside validation, where threading a parameter through
# every rule would only carry this one value.
_bounds = MessageBounds()


def set_message_bounds(bounds: MessageBounds) -> None:
    """Make ``bounds`` the ones every error message of this process keeps."""
    global _bounds
    _bounds = bounds


def excerpt(value: str) -> str:
    """``value`` quoted, cut to the excerpt bound (and then marked as cut)."""
    limit = _bounds.excerpt_chars
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def input_prefix(value: str) -> str:
    """The start of ``value`` that replies may echo (no quotes, no marks)."""
    return value[: _bounds.excerpt_chars]


def bounded_message(message: str) -> str:
    """``message`` cut to the message bound, so no error grows with the input."""
    limit = _bounds.message_chars
    if len(message) <= limit:
        return message
    return f"{message[:limit]}… (cut)"
