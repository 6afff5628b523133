"""Runs the ASGI app: uvicorn for HTTP/1.1 (browsers, Connect, gRPC-Web)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from server.app.asgi import LibraryApp
from server.app.http1 import GuardedHttpToolsProtocol
from server.app.logs import configure_logging, log_drain_period
from server.app.settings import WORKER_SETTINGS_ENV, Settings
from server.app.telemetry.endpoint import metrics_endpoint

log = logging.getLogger("library")

_POLL_SECONDS = 0.1
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A signal this soon after the first is the same request to stop, not a second
# one: Ctrl-C and systemd's default KillMode signal the whole process group, so
# each worker hears it once directly and once more from the supervisor.
SAME_STOP_SECONDS = 1.0


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
    config = uvicorn.Config(
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
    # What uvicorn.run() does, with a supervisor that passes on a second signal.
    server = uvicorn.Server(config)
    # uvicorn re-raises a SIGINT it handled once it has shut down gracefully.
    with contextlib.suppress(KeyboardInterrupt):
        if config.workers > 1:
            DrainingSupervisor(config, sockets=[config.bind_socket()]).run()
            return
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class DrainingSupervisor(Multiprocess):
    """uvicorn's supervisor of ``--workers N``, passing on a signal while the workers stop.

    uvicorn's sends each worker SIGTERM, then waits for them without reading
    its signals, so a second SIGTERM or SIGINT (to end the drain period at
    once) would never reach them; here it is forwarded.
    """

    def join_all(self) -> None:
        """Wait for every worker to exit, forwarding any signal that arrives meanwhile."""
        for worker in self.processes:
            while worker.process.is_alive():
                while self.signal_queue:
                    number = self.signal_queue.pop(0)
                    # uvicorn queues HUP, TTIN and the like too; the workers handle
                    # only these, and any other would kill or stop them outright.
                    if number not in _STOP_SIGNALS:
                        continue
                    for other in self.processes:
                        if other.process.pid is not None and other.process.is_alive():
                            os.kill(other.process.pid, number)
                worker.process.join(_POLL_SECONDS)


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
    settings = Settings.from_workers_env()
    # A spawned worker starts with logging unconfigured (``--workers N``).
    configure_logging(settings)
    app = LibraryApp(settings)
    drain_on_exit_signals(app, settings.drain_seconds)
    return app


def drain_on_exit_signals(app: LibraryApp, drain_seconds: float) -> None:
    """Drain when the server is told to stop, after ``drain_seconds`` of saying not ready.

    On the first SIGTERM or SIGINT the app reports not ready (``/readyz``
    503) but serves on, so balancers stop sending it calls; after
    ``drain_seconds`` (or at a second signal, SAME_STOP_SECONDS or more after
    the first) it ends open streams and the server's own handler starts its
    graceful shutdown. Servers wait for open
    responses before the lifespan shutdown, and a WatchBooks stream never
    ends by itself, so the app must hear about the signal first. Chains to
    the server's own handlers, which must be installed already (true inside
    a uvicorn factory).
    """
    loop = asyncio.get_running_loop()
    previous: dict[int, Callable[[int, FrameType | None], Any]] = {
        signum: chained for signum in _STOP_SIGNALS if callable(chained := signal.getsignal(signum))
    }
    period: asyncio.TimerHandle | None = None
    stopped = False
    first_signal_at = 0.0

    def stop(number: int) -> None:
        nonlocal period, stopped
        period, stopped = None, True
        app.begin_drain()
        previous[number](number, None)

    def on_signal(number: int) -> None:
        nonlocal period, first_signal_at
        if period is not None and loop.time() - first_signal_at < SAME_STOP_SECONDS:
            return
        if period is not None:
            period.cancel()
            log.info("second signal: shutting down now")
            stop(number)
        elif stopped or drain_seconds <= 0:
            stop(number)
        else:
            log_drain_period(drain_seconds)
            app.mark_not_ready()
            first_signal_at = loop.time()
            period = loop.call_later(drain_seconds, stop, number)

    def handler(number: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(on_signal, number)

    for signum in previous:
        signal.signal(signum, handler)
