"""Handler errors become Connect errors: domain errors by kind, bugs as a generic INTERNAL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.domain import errors
from server.rpc.errors import DomainErrorInterceptor

CTX: Any = None


def run_unary(error: Exception) -> ConnectError:
    async def handler(request: object, ctx: object) -> NoReturn:
        raise error

    with pytest.raises(ConnectError) as caught:
        asyncio.run(DomainErrorInterceptor().intercept_unary(handler, None, CTX))
    return caught.value


def run_stream(error: Exception) -> ConnectError:
    async def handler(request: object, ctx: object) -> AsyncIterator[int]:
        yield 1
        raise error

    async def consume() -> list[int]:
        return [
            m async for m in DomainErrorInterceptor().intercept_server_stream(handler, None, CTX)
        ]

    with pytest.raises(ConnectError) as caught:
        asyncio.run(consume())
    return caught.value


@pytest.mark.parametrize("run", [run_unary, run_stream])
@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgument("bad"), Code.INVALID_ARGUMENT),
        (errors.NotFound("bad"), Code.NOT_FOUND),
        (errors.AlreadyExists("bad"), Code.ALREADY_EXISTS),
        (errors.FailedPrecondition("bad"), Code.FAILED_PRECONDITION),
        (errors.Unauthenticated("bad"), Code.UNAUTHENTICATED),
        (errors.PermissionDenied("bad"), Code.PERMISSION_DENIED),
        (errors.OutOfRange("bad"), Code.OUT_OF_RANGE),
    ],
)
def test_domain_errors_keep_their_message(run: Any, error: Exception, code: Code) -> None:
    mapped = run(error)
    assert (mapped.code, mapped.message) == (code, "bad")


@pytest.mark.parametrize("run", [run_unary, run_stream])
def test_a_bug_is_internal_and_does_not_leak(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    mapped = run(KeyError("secret-column-name"))
    assert mapped.code is Code.INTERNAL
    assert "secret" not in mapped.message
    assert "secret-column-name" in caplog.text


@pytest.mark.parametrize("run", [run_unary, run_stream])
def test_connect_errors_pass_through(run: Any) -> None:
    original = ConnectError(Code.UNAVAILABLE, "try later")
    assert run(original) is original
