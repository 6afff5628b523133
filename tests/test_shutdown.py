"""Graceful shutdown: SIGTERM ends open streams cleanly, and committed writes survive."""

from __future__ import annotations

import asyncio
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
    checkout,
    drain,
    get_book,
    present,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio

PROMPTLY = 5.0


@pytest.mark.parametrize("wire", [CONNECT_PROTO, GRPC_WEB], ids=lambda w: w.name)
async def test_sigterm_ends_watchers_cleanly_and_keeps_writes(
    server_factory: Callable[..., ServerProcess], wire: Wire
) -> None:
    server = server_factory()
    async with wire.client(server.url) as client:
        book = await add_book(client)
        member, headers = await add_member(client)
        _, loan = await checkout(client, book.id, headers)
        stream = aiter(client.watch_books(pb.WatchBooksRequest(), timeout_ms=STREAM_TIMEOUT_MS))
        snapshot = await anext(stream)
        started = time.monotonic()
        stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))
        # Raises if the stream breaks instead of ending.
        after_signal = await drain(stream, seconds=PROMPTLY)
        exit_code = await stopping
        stopped_after = time.monotonic() - started
    assert present(present(snapshot.event).book).id == book.id
    assert after_signal == []
    assert exit_code == 0
    assert stopped_after < PROMPTLY

    server.restart()
    async with wire.client(server.url) as client:
        kept = await get_book(client, book.id)
        loans = await client.list_loans(pb.ListLoansRequest(), headers=headers)
    assert not kept.available
    assert [(item.id, item.member_id) for item in loans.loans] == [(loan.id, member.id)]
