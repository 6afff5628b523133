"""Runs the ASGI app: uvicorn for HTTP/1.1 (browsers, Connect, gRPC-Web)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn

from server.app.asgi import LibraryApp
from server.app.http1 import GuardedHttpToolsProtocol
from server.app.settings import WORKER_SETTINGS_ENV, Settings
from server.app.telemetry.endpoint import metrics_endpoint


def run_uvicorn(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, with ``settings.workers`` processes."""
    os.environ[WORKER_SETTINGS_ENV] = settings.for_workers()
    if settings.fd is not None:
        no_delay_on_inherited_socket(settings.fd)
    # uvicorn re-raises SIGTERM once it has shut down gracefully; a stop that
    # was asked for is a success, so exit 0 as supervisors expect.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with metrics_endpoint(settings):
        _run(settings)


def _run(settings: Settings) -> None:
    uvicorn.run(
        "server.app.serve:worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        fd=settings.fd,
        workers=settings.workers,
        log_level=settings.log_level,
        loop="uvloop",
        # httptools, with bounds on header size and time and on connections.
        http=GuardedHttpToolsProtocol,
        lifespan="on",
        # The app writes its own access log (server.app.telemetry.access_log).
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        # 120 s by default: longer than clients' and balancers' idle-connection
        # timeouts (90 s in hyper-based clients, 60 s in nginx): they close idle
        # connections first, so a request never races the server closing it.
        timeout_keep_alive=settings.idle_timeout,
    )


def _exit_cleanly(number: int, frame: FrameType | None) -> None:
    sys.exit(0)


def no_delay_on_inherited_socket(fd: int) -> None:
    """Turn Nagle's algorithm off for connections accepted on an inherited TCP socket.

    uvicorn wraps an inherited socket as AF_UNIX, so it never sets TCP_NODELAY
    on those connections, and each response (headers, then body) stalls ~40 ms
    on the client's delayed ACK. Accepted sockets inherit the option from the
    listening one.
    """
    with socket.socket(fileno=os.dup(fd)) as sock:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def worker_app() -> LibraryApp:
    """The app of one worker process (a uvicorn factory)."""
    app = LibraryApp(Settings.from_workers_env())
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
