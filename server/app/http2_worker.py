"""The app that Envoy's embedded Python serves for ``library serve --http2``.

Envoy imports this module in its own process, so everything it needs comes
from environment variables the launcher (``serve_http2``) sets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.types import Message, Receive, Scope, Send

from server.app.asgi import LibraryApp
from server.app.logs import configure_logging
from server.app.serve_http2 import DRAIN, DRAIN_SOCKET_ENV, NOT_READY
from server.app.settings import Settings

T = TypeVar("T")

log = logging.getLogger("library")


async def _shielded(operation: Awaitable[T]) -> T:
    """Await one of pyvoy's receive()/send() futures without ever cancelling it.

    pyvoy 1.3 completes these futures from Envoy's threads with
    ``loop.call_soon_threadsafe(future.set_result, ...)`` and never checks
    whether the future was cancelled meanwhile. connectrpc cancels the
    receive() it keeps open to notice a disconnect, and a reset stream
    cancels the handler waiting in send(); each then made asyncio log
    ``InvalidStateError`` from a ``Future.set_result`` callback. Shielded, the
    caller is still cancelled at once, and pyvoy's future completes unharmed;
    its outcome (typically ClientDisconnectedError) is then consumed here.
    """
    inner = asyncio.ensure_future(operation)
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        inner.add_done_callback(_consume_outcome)
        raise


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Http2Worker:
    """The LibraryApp, draining when the launcher says so.

    Envoy owns the signals in this process, so the launcher passes SIGTERM on
    through a Unix socket: one byte says "not ready" (the drain period),
    another "drain"; the socket closing means the launcher died. Envoy
    writes no access log here: the app's own (``server.app.telemetry``) has a
    line per call.
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
        # A stream the client reset before the app started (HTTP/2 rapid
        # reset) costs one receive() and nothing else: no handler runs.
        first = await _shielded(receive())
        if first["type"] == "http.disconnect":
            return
        pending: list[Message] = [first]

        async def receive_shielded() -> Message:
            if pending:
                return pending.pop()
            return await _shielded(receive())

        cancelled_send = False

        async def send_shielded(message: Message) -> None:
            # A send cancelled by a reset stream still completes inside pyvoy,
            # but the app cannot tell: connectrpc then sends its response start
            # a second time, which pyvoy 1.3 refuses with a RuntimeError (one
            # logged traceback per reset stream). The stream is gone, so
            # nothing more is sent on it.
            nonlocal cancelled_send
            if cancelled_send:
                return
            try:
                await _shielded(send(message))
            except asyncio.CancelledError:
                cancelled_send = True
                raise

        await self.app(scope, receive_shielded, send_shielded)

    async def _follow_launcher(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self._drain_socket)
        try:
            while message := await reader.read(1):
                if message == NOT_READY:
                    self.app.mark_not_ready()
                elif message == DRAIN:
                    log.info("draining: health reports NOT_SERVING, open watches end")
                    self.app.begin_drain()
        finally:
            writer.close()
        # The launcher stops Envoy before it hangs up, so an end of file here
        # means it died: stop Envoy too rather than serve on as an orphan.
        log.error("the launcher is gone; stopping")
        self.app.begin_drain()
        os.kill(os.getpid(), signal.SIGTERM)


def _worker() -> Http2Worker:
    settings = Settings.from_workers_env()
    configure_logging(settings)
    return Http2Worker(LibraryApp(settings), os.environ[DRAIN_SOCKET_ENV])


app = _worker()
