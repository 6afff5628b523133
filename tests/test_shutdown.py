"""Graceful shutdown: SIGTERM ends open streams cleanly, and committed writes survive."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest

from server.gen.library.v1 import library_pb as pb
from tests.support.clients import (
    CONNECT_PROTO,
    GRPC_WEB,
    STREAM_TIMEOUT_MS,
    Wire,
    add_book,
    add_member,
    drain,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio

PROMPTLY = 5.0
# uvicorn shuts down gracefully, then re-raises the signal it caught, so a
# clean stop may also show as "killed by SIGTERM"; a hang or crash fails below.
CLEAN_EXIT = (0, -signal.SIGTERM)


@pytest.mark.parametrize("wire", [CONNECT_PROTO, GRPC_WEB], ids=lambda w: w.name)
async def test_sigterm_ends_watchers_cleanly_and_keeps_writes(
    server_factory: Callable[..., ServerProcess], wire: Wire
) -> None:
    server = server_factory()
    async with wire.client(server.url) as client:
        book = await add_book(client)
        member, headers = await add_member(client)
        loan = (
            await client.checkout_book(pb.CheckoutBookRequest(id=book.id), headers=headers)
        ).loan
        stream = aiter(client.watch_books(pb.WatchBooksRequest(), timeout_ms=STREAM_TIMEOUT_MS))
        snapshot = await anext(stream)
        started = time.monotonic()
        stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))
        # Raises if the stream breaks instead of ending.
        after_signal = await drain(stream, seconds=PROMPTLY)
        exit_code = await stopping
        stopped_after = time.monotonic() - started
    assert snapshot.event.book.id == book.id
    assert after_signal == []
    assert exit_code in CLEAN_EXIT
    assert stopped_after < PROMPTLY

    server.restart()
    async with wire.client(server.url) as client:
        kept = (await client.get_book(pb.GetBookRequest(id=book.id))).book
        loans = await client.list_loans(pb.ListLoansRequest(), headers=headers)
    assert not kept.available
    assert [(item.id, item.member_id) for item in loans.loans] == [(loan.id, member.id)]
