"""Runs the ASGI app: uvicorn for HTTP/1.1 (browsers, Connect, gRPC-Web)."""

from __future__ import annotations

import asyncio
import os
import signal
from types import FrameType

import uvicorn

from server.app.asgi import LibraryApp
from server.app.settings import Settings

# Worker processes rebuild the settings from this variable.
_SETTINGS_ENV = "LIBRARY_INTERNAL_SETTINGS_JSON"


def run_uvicorn(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, with ``settings.workers`` processes."""
    os.environ[_SETTINGS_ENV] = settings.model_dump_json(exclude={"admin_token"})
    uvicorn.run(
        "server.app.serve:worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        fd=settings.fd,
        workers=settings.workers,
        log_level=settings.log_level,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=settings.log_level in ("debug", "trace"),
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
    )


def worker_app() -> LibraryApp:
    """The app of one worker process (a uvicorn factory)."""
    app = LibraryApp(Settings.model_validate_json(os.environ[_SETTINGS_ENV]))
    drain_on_exit_signals(app)
    return app


def drain_on_exit_signals(app: LibraryApp) -> None:
    """Start draining as soon as the server is told to stop.

    Servers wait for open responses before the lifespan shutdown, and a
    WatchBooks stream never ends by itself, so the app must hear about the
    signal first. Chains to the server's own handlers, which must be
    installed already (true inside a uvicorn factory).
    """
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(
            number: int,
            frame: FrameType | None,
            previous: signal.Handlers | object = previous,
        ) -> None:
            loop.call_soon_threadsafe(app.begin_drain)
            if callable(previous):
                previous(number, frame)

        signal.signal(signum, handler)
