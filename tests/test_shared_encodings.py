"""A live event is serialised once per codec, whatever the number of streams and protocols."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner
from connectrpc.codec import proto_binary_codec, proto_json_codec

from server.app.asgi import LibraryApp
from server.app.cli import main
from server.app.settings import Settings
from server.gen.library.v1 import library_pb as pb
from server.rpc.codecs import SharedEncodings, codecs
from tests.support.clients import WIRES, aclose, bearer, book_request, get_book, present
from tests.support.events import next_events, watch

pytestmark = pytest.mark.anyio

STREAMS_PER_WIRE = 20


async def _serving(app: LibraryApp) -> AsyncGenerator[str, None]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", loop="none", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_one_event_to_many_streams_on_every_wire_is_encoded_once_per_codec(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "library.db")
    made = await asyncio.to_thread(
        CliRunner().invoke, main, ["create-librarian", "ann", "--database", database]
    )
    assert made.exit_code == 0, made.output
    librarian = bearer(made.output.strip())
    app = LibraryApp(Settings(database_url=database))
    serving = _serving(app)
    url = await anext(serving)
    try:
        clients = [wire.client(url) for wire in WIRES]
        await clients[0].create_book(book_request(), headers=librarian)
        snapshot = watch(clients[0], 0)
        (first,) = await next_events(snapshot, 1)
        await aclose(snapshot)
        # Resuming from the head (a replay, not a snapshot), every stream is live
        # once it has the next event, from its replay or live.
        streams = [watch(c, first.revision) for c in clients for _ in range(STREAMS_PER_WIRE)]
        await clients[0].create_book(book_request(), headers=librarian)
        await asyncio.gather(*(next_events(s, 1) for s in streams))

        before = app.shared_encodings.encodings
        book = present((await clients[0].create_book(book_request(), headers=librarian)).book)
        seen = await asyncio.gather(*(next_events(s, 1) for s in streams))
        # Connect JSON uses the JSON codec; Connect proto and gRPC-Web the binary one.
        assert app.shared_encodings.encodings - before == 2
        stored = await get_book(clients[1], book.id)
        for (event,) in seen:
            assert event.type == pb.EventType.CREATED
            assert event.book == stored == book
        assert len({event.revision for (event,) in seen}) == 1
        for stream in streams:
            await aclose(stream)
        for client in clients:
            await client.close()
    finally:
        await serving.aclose()


def test_the_cache_keeps_only_the_newest_shared_messages_and_answers_others_directly() -> None:
    shared = SharedEncodings(4)
    binary, json = codecs(64, shared)
    messages = [
        pb.WatchBooksResponse(event=pb.BookEvent(revision=n, book=pb.Book(id=n, title=f"t{n}")))
        for n in range(10)
    ]
    for message in messages:
        shared.share(message)
    assert len(shared) == 4
    for message in messages:
        for _ in range(3):
            assert binary.encode(message) == proto_binary_codec().encode(message)
            assert json.encode(message) == proto_json_codec().encode(message)
    # Only the four still cached were encoded once per codec; the rest every time, uncached.
    assert shared.encodings == 4 * 2
    unshared = pb.WatchBooksResponse(event=pb.BookEvent(revision=99))
    assert binary.encode(unshared) == proto_binary_codec().encode(unshared)
    assert shared.encodings == 4 * 2
