"""The app that Envoy's embedded Python serves for ``library serve --http2``.

Envoy imports this module in its own process, so everything it needs comes
from environment variables the launcher (``serve_http2``) sets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from starlette.types import Message, Receive, Scope, Send

from server.app.asgi import LibraryApp
from server.app.serve_http2 import DRAIN_SOCKET_ENV
from server.app.settings import Settings

log = logging.getLogger("library")


class Http2Worker:
    """The LibraryApp, draining when the launcher says so.

    Envoy owns the signals in this process, so the launcher passes SIGTERM on
    through a Unix socket: one byte means "drain"; the socket closing means
    the launcher died. Envoy writes no access log here: the app's own
    (``server.app.telemetry``) has a line per call.
    """

    def __init__(self, app: LibraryApp, drain_socket: str) -> None:
        self.app = app
        self._drain_socket = drain_socket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, or the lifespan with the drain listener beside it."""
        if scope["type"] == "lifespan":
            listener = asyncio.create_task(self._follow_launcher())
            try:
                await self.app(scope, receive, send)
            finally:
                listener.cancel()
            return

        async def receive_shielded() -> Message:
            # connectrpc cancels the receive() it keeps open to notice a
            # disconnect; pyvoy 1.3 later sets a result on that cancelled
            # future and asyncio logs InvalidStateError for every request.
            return await asyncio.shield(receive())

        await self.app(scope, receive_shielded, send)

    async def _follow_launcher(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self._drain_socket)
        try:
            if await reader.read(1):
                log.info("draining: health reports NOT_SERVING, open watches end")
                self.app.begin_drain()
                await reader.read(1)
        finally:
            writer.close()
        # The launcher stops Envoy before it hangs up, so an end of file here
        # means it died: stop Envoy too rather than serve on as an orphan.
        log.error("the launcher is gone; stopping")
        self.app.begin_drain()
        os.kill(os.getpid(), signal.SIGTERM)


def _worker() -> Http2Worker:
    settings = Settings.from_workers_env()
    level = "DEBUG" if settings.log_level == "trace" else settings.log_level.upper()
    logging.basicConfig(level=level, format="%(levelname)s:%(name)s:%(message)s")
    return Http2Worker(LibraryApp(settings), os.environ[DRAIN_SOCKET_ENV])


app = _worker()
