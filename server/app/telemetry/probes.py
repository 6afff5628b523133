"""Plain HTTP probes for load balancers and Kubernetes: ``/healthz`` and ``/readyz``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PROBE_TIMEOUT_SECONDS = 2.0


class Probes:
    """Answers GET/HEAD ``/healthz`` (the process serves) and ``/readyz``; passes the rest on.

    Ready means: not draining, and the storage answers a read within
    PROBE_TIMEOUT_SECONDS. Either failing is a 503 with the reason.
    """

    def __init__(
        self,
        app: ASGIApp,
        draining: asyncio.Event,
        storage_answers: Callable[[], Awaitable[object]],
    ) -> None:
        self._app = app
        self._draining = draining
        self._storage_answers = storage_answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a probe, or serve the request with the wrapped app."""
        path = scope.get("path")
        if path == "/healthz":
            response = PlainTextResponse("ok\n")
        elif path == "/readyz":
            response = await self._readiness()
        else:
            await self._app(scope, receive, send)
            return
        response.headers["cache-control"] = "no-store"
        await response(scope, receive, send)

    async def _readiness(self) -> PlainTextResponse:
        if self._draining.is_set():
            return PlainTextResponse("draining\n", status_code=503)
        try:
            await asyncio.wait_for(self._storage_answers(), PROBE_TIMEOUT_SECONDS)
        except Exception as e:
            return PlainTextResponse(f"storage unreachable: {type(e).__name__}\n", status_code=503)
        return PlainTextResponse("ready\n")
