"""Turning a backend's "cannot serve you right now" errors into the domain's Unavailable."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from server.domain.errors import Unavailable


class Outages:
    """A context manager raising Unavailable(``message``) for errors ``is_outage`` accepts.

    Each adapter wraps its few hooks in one, so every operation gets it. A
    class rather than ``@contextmanager``: it holds no state, so one instance
    serves every call, and entering it costs next to nothing on hot reads.
    """

    __slots__ = ("_is_outage", "_message")

    def __init__(self, is_outage: Callable[[Exception], bool], message: str) -> None:
        self._is_outage = is_outage
        self._message = message

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, Exception) and self._is_outage(error):
            raise Unavailable(self._message) from error
