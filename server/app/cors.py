"""CORS for an explicit allow-list of page origins, on the raw ASGI messages.

Starlette's ``CORSMiddleware`` builds ``Headers`` objects for every request and
every response, which cost GetBook about 20 µs of its ~70 µs (measured driving
the app in-process); a browser-facing deployment always has an allow-list, so
that cost was on every call. Here a request is looked at once, as the raw
header list, and a response only gets headers appended. Preflights are rare
and subtle, so they stay with Starlette's implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_VARY_ORIGIN = (b"vary", b"Origin")
_VARY_ONLY: tuple[tuple[bytes, bytes], ...] = (_VARY_ORIGIN,)


class AllowedOrigins:
    """Lets pages on ``origins`` call ``app`` from a browser; no wildcard, no credentials."""

    def __init__(
        self,
        app: ASGIApp,
        origins: Sequence[str],
        allow_methods: Sequence[str],
        allow_headers: Sequence[str],
        expose_headers: Sequence[str],
        max_age: int,
    ) -> None:
        self._app = app
        self._origins = frozenset(origin.encode("latin-1") for origin in origins)
        self._expose = (b"access-control-expose-headers", ", ".join(expose_headers).encode())
        self._preflights = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=allow_methods,
            allow_headers=allow_headers,
            expose_headers=expose_headers,
            max_age=max_age,
        )

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Answer a preflight, or pass the request on and mark its response.

        Returns the inner app's coroutine: no frame of this one on every call.
        """
        if scope["type"] != "http":
            return self._app(scope, receive, send)
        origin = _origin(scope)
        if origin is None:
            # Shared caches must not hand this answer to a page on an allowed
            # origin, which needs the headers below.
            extra = _VARY_ONLY
        elif scope["method"] == "OPTIONS":
            return self._preflights(scope, receive, send)
        elif origin in self._origins:
            extra = ((b"access-control-allow-origin", origin), self._expose, _VARY_ORIGIN)
        else:
            extra = _VARY_ONLY

        def send_marked(message: Message) -> Awaitable[None]:
            # The server's own send, returned: no coroutine of this one per message.
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            return send(message)

        return self._app(scope, receive, send_marked)


def _origin(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"origin":
            return bytes(value)
    return None
