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
# one, for a server without a supervisor (a wrapper may pass the group's signal on).
SAME_STOP_SECONDS = 1.0
REPEATED: dict[int, int] = {signal.SIGTERM: signal.SIGUSR1, signal.SIGINT: signal.SIGUSR2}
"""How the supervisor of ``--workers N`` passes on a stop signal after its first.

Ctrl-C and systemd's default KillMode signal the whole process group, so each
worker hears the first stop signal directly and once more from the supervisor,
possibly much later under load: a worker takes SIGTERM and SIGINT only as the
first request, and these as the next ones. A worker so new that it has no
handler for them yet dies of one, having accepted nothing: the sooner stop asked for.
"""


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
    """uvicorn's supervisor of ``--workers N``, telling its workers a first stop from a second.

    uvicorn's own sends each worker SIGTERM, then waits for them without reading
    its signals, so a second SIGTERM or SIGINT (to end the drain period at
    once) would never reach them. Here every stop signal after the first is
    passed on as its REPEATED counterpart: a worker also hears a signal sent to
    the whole process group directly, however late this copy comes, so only the
    supervisor can count how often it was asked.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self._repeats: list[int] = []

    def handle_int(self) -> None:
        """A SIGINT: the request to stop, or to stop sooner."""
        self._asked_to_stop(signal.SIGINT)

    def handle_term(self) -> None:
        """A SIGTERM: the request to stop, or to stop sooner."""
        self._asked_to_stop(signal.SIGTERM)

    def _asked_to_stop(self, number: int) -> None:
        if self.should_exit.is_set():
            self._repeats.append(number)
        else:
            log.info("received %s: stopping the workers", signal.Signals(number).name)
            self.should_exit.set()

    def terminate_all(self) -> None:
        """Send each worker SIGTERM, then any request to stop that came with the first."""
        super().terminate_all()
        self._pass_on_repeats()

    def join_all(self) -> None:
        """Wait for every worker to exit, passing on each stop signal that arrives meanwhile."""
        for worker in self.processes:
            while worker.process.is_alive():
                while self.signal_queue:
                    number = self.signal_queue.pop(0)
                    # uvicorn queues HUP, TTIN and the like too; the workers handle
                    # only stop signals, and any other would kill or stop them outright.
                    if number in _STOP_SIGNALS:
                        self._repeats.append(number)
                self._pass_on_repeats()
                worker.process.join(_POLL_SECONDS)

    def _pass_on_repeats(self) -> None:
        for number in self._repeats:
            for other in self.processes:
                if other.process.pid is not None and other.process.is_alive():
                    os.kill(other.process.pid, REPEATED[number])
        self._repeats.clear()


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
    drain_on_exit_signals(app, settings.drain_seconds, supervised=settings.workers > 1)
    return app


def drain_on_exit_signals(app: LibraryApp, drain_seconds: float, supervised: bool) -> None:
    """Drain when the server is told to stop, after ``drain_seconds`` of saying not ready.

    On the first SIGTERM or SIGINT the app reports not ready (``/readyz``
    503) but serves on, so balancers stop sending it calls; after
    ``drain_seconds`` (or at a second request to stop) it ends open streams
    and the server's own handler starts its graceful shutdown. Servers wait
    for open responses before the lifespan shutdown, and a WatchBooks stream
    never ends by itself, so the app must hear about the signal first.

    A second request is, for a ``supervised`` worker, one of the REPEATED
    signals from the supervisor; otherwise a stop signal SAME_STOP_SECONDS or
    more after the first. Chains to uvicorn's own handlers, installed already
    inside a uvicorn factory; a signal they took before this ran (a worker
    still starting) begins the drain period now.
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

    def begin(number: int) -> None:
        nonlocal period, first_signal_at
        if drain_seconds <= 0:
            stop(number)
            return
        log_drain_period(drain_seconds)
        app.mark_not_ready()
        first_signal_at = loop.time()
        period = loop.call_later(drain_seconds, stop, number)

    def again(number: int) -> None:
        if stopped:
            previous[number](number, None)  # uvicorn's: a SIGINT skips the graceful wait
            return
        if period is not None:
            period.cancel()
        # Signals pending together arrive lowest number first: the supervisor's
        # repeat may come before the SIGTERM it follows.
        log.info("second signal: shutting down now")
        stop(number)

    def on_signal(number: int) -> None:
        if period is None and not stopped:
            begin(number)
        elif supervised:
            log.info("stop signal heard again: still one request to stop until the supervisor's")
        elif period is None or loop.time() - first_signal_at >= SAME_STOP_SECONDS:
            again(number)

    def on_loop(callback: Callable[[int], None], number: int) -> None:
        # A signal after the event loop closed finds the process stopping anyway.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, number)

    def handler(number: int, frame: FrameType | None) -> None:
        on_loop(on_signal, number)

    for signum in previous:
        signal.signal(signum, handler)
    if supervised:
        firsts = {repeated: first for first, repeated in REPEATED.items()}

        def repeated_handler(number: int, frame: FrameType | None) -> None:
            on_loop(again, firsts[number])

        for repeated in firsts:
            signal.signal(repeated, repeated_handler)
    server = getattr(previous.get(signal.SIGTERM), "__self__", None)
    if isinstance(server, uvicorn.Server) and server.should_exit and not server.force_exit:
        # uvicorn took a stop signal before the app existed: it would stop as
        # soon as it started, without a drain period.
        server.should_exit = False
        on_signal(signal.SIGTERM)
