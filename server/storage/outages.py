"""Turning a backend's "cannot serve you right now" errors into the domain's Unavailable."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from server.domain.errors import Unavailable

P = ParamSpec("P")
T = TypeVar("T")

Method = Callable[P, Coroutine[Any, Any, T]]


def unavailable_on(
    is_outage: Callable[[Exception], bool], message: str
) -> Callable[[Method[P, T]], Method[P, T]]:
    """A decorator raising Unavailable(``message``) for errors ``is_outage`` accepts."""

    def decorate(method: Method[P, T]) -> Method[P, T]:
        @functools.wraps(method)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            with unavailable_within(is_outage, message):
                return await method(*args, **kwargs)

        return guarded

    return decorate


@contextmanager
def unavailable_within(is_outage: Callable[[Exception], bool], message: str) -> Iterator[None]:
    """Raise Unavailable(``message``) for errors ``is_outage`` accepts inside the block."""
    try:
        yield
    except Exception as e:
        if not is_outage(e):
            raise
        raise Unavailable(message) from e
