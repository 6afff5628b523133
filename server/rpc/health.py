"""The standard ``grpc.health.v1.Health`` service, NOT_SERVING once the server is stopping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from server.gen.grpc.health.v1 import health_pb as pb
from server.gen.grpc.health.v1.health_connect import Health

Status = pb.HealthCheckResponse.ServingStatus


class HealthHandler(Health):
    """Reports the whole server ("") and each named service as one."""

    def __init__(self, services: set[str], stopping: asyncio.Event) -> None:
        self._services = services | {""}
        self._stopping = stopping

    def _status(self, service: str) -> Any:
        if service not in self._services:
            raise ConnectError(Code.NOT_FOUND, f"unknown service {service!r}")
        return Status.NOT_SERVING if self._stopping.is_set() else Status.SERVING

    async def check(
        self, request: pb.HealthCheckRequest, ctx: RequestContext[Any, Any]
    ) -> pb.HealthCheckResponse:
        """The current status."""
        return pb.HealthCheckResponse(status=self._status(request.service))

    async def watch(
        self, request: pb.HealthCheckRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.HealthCheckResponse]:
        """The status now, then NOT_SERVING once the server is stopping."""
        if request.service not in self._services:
            yield pb.HealthCheckResponse(status=Status.SERVICE_UNKNOWN)
            return
        yield pb.HealthCheckResponse(status=self._status(request.service))
        if not self._stopping.is_set():
            await self._stopping.wait()
            yield pb.HealthCheckResponse(status=Status.NOT_SERVING)
