"""The ASGI application: the RPC services, health, reflection and the web page on one port."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping
from pathlib import Path
from typing import Any

from connectrpc.compression.brotli import BrotliCompression
from connectrpc.compression.gzip import GzipCompression
from connectrpc.compression.zstd import ZstdCompression
from connectrpc_grpcreflect import (
    ServerReflectionAlphaASGIApplication,
    ServerReflectionAlphaService,
    ServerReflectionASGIApplication,
    ServerReflectionService,
)
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server.app.collector import SettledCollector
from server.app.cors import AllowedOrigins
from server.app.settings import Settings
from server.app.telemetry import Probes, Telemetry
from server.app.web import web_app
from server.app.wiring import library_for, storage_for
from server.domain.book_cache import BookCache
from server.domain.errors import MessageBounds, set_message_bounds
from server.domain.hub import EventHub, WatchLimits
from server.domain.storage import Storage
from server.gen.grpc.health.v1 import health_connect, health_pb
from server.gen.library.v1 import library_connect, library_pb
from server.rpc.auth import AuthInterceptor
from server.rpc.codecs import SharedEncodings, codecs
from server.rpc.errors import BoundedErrorMessages, DomainErrorInterceptor, cut_protocol_headers
from server.rpc.health import HealthHandler
from server.rpc.library import LibraryHandler, watch_response
from server.rpc.write_gate import WriteGate, writes_of

log = logging.getLogger("library")

LIBRARY_SERVICE = library_connect.LibraryService.desc().type_name
# Connect and gRPC-Web need these request headers and must be able to read
# these response headers from another origin.
CORS_ALLOW_HEADERS = [
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
]
CORS_EXPOSE_HEADERS = ["grpc-status", "grpc-message", "grpc-status-details-bin"]
# Each is used only when the client asks for it, in the client's order of preference.
COMPRESSIONS = (ZstdCompression(), BrotliCompression(), GzipCompression())


class Router:
    """Dispatches a request to the app serving its path's first segment (the RPC service).

    Reads (GET, HEAD) of other paths go to ``fallback`` (the web page); any other
    request there is an RPC to an unknown service, which Connect answers with 404.
    ``procedures`` are the paths served, found by one lookup instead of parsing.
    """

    def __init__(
        self, services: Mapping[str, ASGIApp], fallback: ASGIApp, procedures: Iterable[str] = ()
    ) -> None:
        self._services = services
        self._fallback = fallback
        self._procedures = {path: services[_service_of(path)] for path in procedures}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Route one request: the chosen app's own coroutine, no frame of this one around it."""
        app = self._procedures.get(scope["path"])
        if app is None:
            app = self._services.get(_service_of(scope["path"]))
            if app is None:
                app = self._fallback if scope.get("method") in ("GET", "HEAD") else _unknown_service
                return app(scope, receive, send)
        if _is_grpc_without_trailers(scope):
            return _grpc_needs_http2(scope, receive, send)
        headers = cut_protocol_headers(scope["headers"])
        if headers is not scope["headers"]:
            scope = {**scope, "headers": headers}
        return app(scope, receive, send)


def _service_of(path: str) -> str:
    return path[1 : path.find("/", 1)] if path.count("/") >= 2 else ""


def _is_grpc_without_trailers(scope: Scope) -> bool:
    if "http.response.trailers" in scope.get("extensions", {}):
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.startswith(b"application/grpc") and not value.startswith(
                b"application/grpc-web"
            )
    return False


async def _unknown_service(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("no such service", status_code=404)(scope, receive, send)


async def _grpc_needs_http2(scope: Scope, receive: Receive, send: Send) -> None:
    # Plain gRPC ends every call with HTTP trailers, which this server cannot send.
    message = (
        "the gRPC protocol needs HTTP/2 trailers: call a server started with"
        " 'library serve --http2', or use Connect or gRPC-Web here"
    )
    await PlainTextResponse(message, status_code=415)(scope, receive, send)


class LibraryApp:
    """The whole service as one ASGI app; storage opens at start-up and closes at shutdown."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        """Serve ``storage`` (unopened: the app opens and closes it), or the one ``settings`` name.

        A storage of the caller's own lets an embedding (or a test) observe or
        wrap what the app does with it, without reaching into the app.
        """
        self.settings = settings
        set_message_bounds(MessageBounds(settings.max_error_message, settings.error_excerpt))
        self.draining = asyncio.Event()
        # Set first, for the drain period: probes and health say "not ready", calls go on.
        self.stopping = asyncio.Event()
        self.telemetry = Telemetry(settings)
        raw_storage = storage if storage is not None else storage_for(settings)
        self._storage = self.telemetry.storage(raw_storage)
        limits = WatchLimits(settings.max_watchers, settings.max_snapshots, settings.watch_queue)
        storage = self._storage
        # Read on every cached GetBook: straight from the storage, not through the
        # tracing proxy (a plain value makes no span anyway). None when off.
        self._cache = (
            BookCache(lambda: raw_storage.committed_head, settings.book_cache)
            if settings.book_cache
            else None
        )
        # Each live event's message is serialised once per codec for all streams.
        self.shared_encodings = SharedEncodings(settings.watch_queue)
        self.hub = EventHub(
            storage,
            watch_response,
            self.draining,
            limits,
            self._cache,
            self.shared_encodings.share,
        )
        self.write_gate = WriteGate(
            writes_of(library_connect.LibraryService.desc()),
            per_turn=settings.writes_per_turn,
            in_progress=settings.max_writes_in_progress,
            waiting=settings.max_waiting_writes,
        )
        self._app: ASGIApp | None = None
        self._collector = SettledCollector()

    def mark_not_ready(self) -> None:
        """Report not ready (``/readyz`` 503, NOT_SERVING) while still serving every call."""
        self.stopping.set()

    def begin_drain(self) -> None:
        """Report NOT_SERVING and end open streams cleanly, so clients resume elsewhere."""
        self.stopping.set()
        self.draining.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle lifespan here; everything else goes to the assembled app."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self._app is None:
            raise RuntimeError("the app was not started: serve it with ASGI lifespan on")
        await self._app(scope, receive, send)

    async def _startup(self) -> None:
        """Open storage and assemble the routes; storage is closed again if that fails."""
        await self._storage.open()
        try:
            await self.hub.start()
            self._app = await self._assemble()
        except BaseException:
            await self._shutdown()
            raise
        self.telemetry.start(self._storage, lambda: self.hub.head)
        self._collector.settle()

    async def _shutdown(self) -> None:
        """Stop watching and observing, then close storage, whatever fails before."""
        self.begin_drain()
        self._collector.restore()
        try:
            await self.hub.stop()
            await self.telemetry.stop()
        finally:
            await self._storage.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except Exception as e:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self._shutdown()
                except Exception as e:
                    log.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _assemble(self) -> ASGIApp:
        settings = self.settings
        library = await library_for(settings, self._storage, self._cache)
        # Every service parses requests through these (see server/rpc/codecs.py)
        # and cuts long error messages.
        served_codecs = codecs(settings.max_json_depth, self.shared_encodings)
        bounded = [BoundedErrorMessages()]
        library_app = library_connect.LibraryServiceASGIApplication(
            LibraryHandler(library, self.hub, settings.max_import_failures, self._cache),
            interceptors=[
                *self.telemetry.metadata_interceptors(),
                # Bounds error messages too, so it must stay the first that quotes input;
                # then a write waits for its turn at the gate.
                AuthInterceptor(library, self.write_gate),
                # First of the message interceptors, so it maps their errors too.
                DomainErrorInterceptor(),
                *self.telemetry.message_interceptors(),
                self.write_gate.places,
            ],
            compressions=COMPRESSIONS,
            codecs=served_codecs,
        )
        health_app = health_connect.HealthASGIApplication(
            HealthHandler({LIBRARY_SERVICE}, self.stopping),
            interceptors=bounded,
            codecs=served_codecs,
        )
        descriptors = (library_pb.desc(), health_pb.desc())
        routes: dict[str, Any] = {
            LIBRARY_SERVICE: library_app,
            health_connect.Health.desc().type_name: health_app,
            "grpc.reflection.v1.ServerReflection": ServerReflectionASGIApplication(
                ServerReflectionService(*descriptors), interceptors=bounded, codecs=served_codecs
            ),
            "grpc.reflection.v1alpha.ServerReflection": ServerReflectionAlphaASGIApplication(
                ServerReflectionAlphaService(*descriptors),
                interceptors=bounded,
                codecs=served_codecs,
            ),
        }
        # Static files signal a missing file or a POST as HTTPException; without
        # this the server would answer those with a 500.
        web = ExceptionMiddleware(web_app(settings.web_dir or _default_web_dir()))
        probed = Probes(web, self.stopping, lambda: self._storage.get_book(0))
        procedures = _procedures(descriptors, routes)
        app: ASGIApp = Router(routes, probed, procedures)
        if settings.cors_origins:
            app = AllowedOrigins(
                app,
                origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=CORS_ALLOW_HEADERS,
                expose_headers=CORS_EXPOSE_HEADERS,
                max_age=7200,
            )
        return self.telemetry.observe(app, procedures, COMPRESSIONS)


def _procedures(files: Any, routes: Mapping[str, ASGIApp]) -> frozenset[str]:
    """Every ``/package.Service/Method`` path the app serves."""
    known = {f"/{s.type_name}/{m.name}" for f in files for s in f.services for m in s.methods}
    # Reflection has one method in both versions (its descriptors are not at hand here).
    known.update(f"/{name}/ServerReflectionInfo" for name in routes if ".reflection." in name)
    return frozenset(known)


def _default_web_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "web" / "dist"
