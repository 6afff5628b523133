"""Runs the app over HTTP/2 (h2c or TLS) on pyvoy: gRPC, full duplex, reflection.

pyvoy runs Envoy with the app embedded in Envoy's process (see
``http2_worker``). This launcher stays in front: it passes SIGTERM/SIGINT on
as a graceful drain, then stops Envoy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import tempfile
import urllib.request
from pathlib import Path

import click
from pyvoy import LogLevel, StartupError

from server.app.envoy_config import HardenedPyvoyServer
from server.app.logs import log_drain_period
from server.app.settings import WORKER_SETTINGS_ENV, Settings
from server.app.startup import check_can_listen
from server.app.telemetry.endpoint import metrics_endpoint

log = logging.getLogger("library")

WORKER_APP = "server.app.http2_worker:app"
# How the launcher hands the worker the drain socket, and what it says there.
DRAIN_SOCKET_ENV = "LIBRARY_INTERNAL_DRAIN_SOCKET"
NOT_READY = b"n"
"""Report not ready, serve on (the drain period)."""
DRAIN = b"d"
"""End open streams: the graceful stop begins."""
# Envoy's own logging is far chattier than ours at the same level.
_ENVOY_LOG_LEVELS: dict[str, LogLevel] = {
    "critical": "critical",
    "error": "error",
    "warning": "error",
    "info": "error",
    "debug": "warning",
    "trace": "debug",
}
_ACTIVE_REQUESTS_STAT = "http.ingress_http.downstream_rq_active"
_POLL_SECONDS = 0.05
# The admin port is picked free just before Envoy binds it, so another
# process can take it in between, rarely; a new port is picked each attempt.
_START_ATTEMPTS = 3


def run_http2(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then drain for up to ``settings.shutdown_timeout``."""
    with metrics_endpoint(settings):
        code = asyncio.run(_serve(settings))
    sys.exit(code)


async def _serve(settings: Settings) -> int:
    with tempfile.TemporaryDirectory(prefix="library-http2-") as tmp:
        drain = DrainSignal(Path(tmp) / "drain.sock")
        await drain.start()
        try:
            return await _run_envoy(settings, drain)
        finally:
            await drain.close()


async def _run_envoy(settings: Settings, drain: DrainSignal) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await start_envoy(settings, drain)
    try:
        scheme = "https" if settings.tls_cert else "http"
        click.echo(
            f"library serving HTTP/2 on {scheme}://{server.listener_address}:{server.listener_port}",
            err=True,
        )
        exited = asyncio.ensure_future(server.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait((exited, stopping), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not stop.is_set():
            return _exited_unexpectedly(exited)
        # Cleared before anything is awaited, so a second signal is never lost.
        stop.clear()
        # Ctrl-C in a terminal reaches Envoy too, which then stops at once.
        if not server.stopped and settings.drain_seconds > 0:
            await drain.send(NOT_READY)
            log_drain_period(settings.drain_seconds)
            # A second signal ends the period at once.
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                (exited, stopping),
                timeout=settings.drain_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            stopping.cancel()
            if exited.done() and exited.result() != 0:
                return _exited_unexpectedly(exited)
        if not server.stopped:
            await drain.send(DRAIN)
            await _drain_envoy(server, settings.shutdown_timeout)
    finally:
        await server.stop()
    return 0


def _exited_unexpectedly(exited: asyncio.Future[int | None]) -> int:
    log.error("Envoy exited unexpectedly with code %s", exited.result())
    return 1


async def start_envoy(settings: Settings, drain: DrainSignal) -> HardenedPyvoyServer:
    """Start Envoy, trying again only if another process took its admin port first.

    Any other failure (a bad certificate, a listener port taken meanwhile) would
    fail again the same way: it ends the start at once, Envoy's own log line
    saying why.
    """
    attempt = 1
    while True:
        server = _pyvoy_server(settings, drain)
        try:
            await server.start()
        except StartupError:
            if attempt == _START_ATTEMPTS or not _taken_by_another(server.admin_address):
                raise click.ClickException("Envoy did not start; its log above says why") from None
            log.warning(
                "another process took Envoy's admin address %s; trying another",
                server.admin_address,
            )
            attempt += 1
        else:
            return server


def _taken_by_another(address: str) -> bool:
    """Whether something listens on ``address`` (host:port) now that our Envoy has exited."""
    host, port = address.rsplit(":", 1)
    return check_can_listen(host, int(port)) is not None


def _pyvoy_server(settings: Settings, drain: DrainSignal) -> HardenedPyvoyServer:
    return HardenedPyvoyServer(
        settings,
        WORKER_APP,
        address=settings.host,
        port=settings.port,
        tls_cert=settings.tls_cert,
        tls_key=settings.tls_key,
        tls_enable_http3=False,
        lifespan=True,
        loop="uvloop",
        log_level=_ENVOY_LOG_LEVELS[settings.log_level],
        # On drain, every connection gets GOAWAY at once; listeners stay
        # open for the drain time so health probes still get an answer.
        additional_envoy_args=[
            "--drain-strategy",
            "immediate",
            "--drain-time-s",
            str(max(1, settings.shutdown_timeout)),
        ],
        env={
            WORKER_SETTINGS_ENV: settings.for_workers(),
            DRAIN_SOCKET_ENV: str(drain.path),
        },
        stdout=None,
        stderr=None,
    )


class DrainSignal:
    """A Unix socket the worker app connects to and reads NOT_READY and DRAIN from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writers: list[asyncio.StreamWriter] = []
        self._sent = b""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen for the worker."""
        self._server = await asyncio.start_unix_server(self._accept, self.path)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if self._sent:
            await self._tell(writer, self._sent)

    async def send(self, message: bytes) -> None:
        """Tell every worker NOT_READY (report not ready) or DRAIN (end watches too)."""
        self._sent += message
        for writer in self._writers:
            await self._tell(writer, message)

    @staticmethod
    async def _tell(writer: asyncio.StreamWriter, message: bytes) -> None:
        try:
            writer.write(message)
            await writer.drain()
        except ConnectionError:
            pass  # That worker is gone already.

    async def close(self) -> None:
        """Stop listening and hang up."""
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _drain_envoy(server: HardenedPyvoyServer, grace_seconds: float) -> None:
    """Send HTTP/2 GOAWAY on every connection, then wait until no request is open."""
    # Envoy's admin interface is the only way to ask it for a graceful drain
    # and for its count of open requests.
    admin = server.admin_address
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_seconds
    try:
        await asyncio.to_thread(_admin_post, admin, "/drain_listeners?graceful&skip_exit")
        while loop.time() < deadline:
            if await asyncio.to_thread(_active_requests, admin) == 0:
                return
            await asyncio.sleep(_POLL_SECONDS)
    except OSError:
        return  # Envoy is gone already.
    log.warning("requests still open after %ss; stopping anyway", grace_seconds)


def _admin_post(admin: str, path: str) -> None:
    request = urllib.request.Request(f"http://{admin}{path}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def _active_requests(admin: str) -> int:
    url = f"http://{admin}/stats?format=json&filter=^{_ACTIVE_REQUESTS_STAT}$"
    with urllib.request.urlopen(url, timeout=5) as response:
        stats = json.load(response)["stats"]
    return sum(int(stat.get("value", 0)) for stat in stats)
