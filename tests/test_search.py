"""SearchBooks: one answer per query, in order, matching title, author or ISBN in any case.

Over HTTP/1.1 the stream is half-duplex: the client sends every query, then reads.
"""

from __future__ import annotations

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.gen.library.v1 import library_pb as pb
from tests.support.clients import (
    CONNECT_PROTO,
    LIBRARIAN,
    Wire,
    add_book,
    drain,
    over_all_wires,
    stream_of,
    unique,
)
from tests.support.data import isbn13
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio


@over_all_wires
async def test_each_query_gets_one_answer_in_order(server: ServerProcess, wire: Wire) -> None:
    tag = unique()
    isbn = isbn13()
    async with wire.client(server.url) as client:
        by_title = await add_book(client, title=f"On {tag.upper()} Things")
        by_author = await add_book(client, author=f"Mary {tag.capitalize()}")
        by_isbn = await add_book(client, isbn=isbn)
        many = [
            pb.ImportBooksRequest(title=f"{tag}-many {i}", author="A", isbn=isbn13())
            for i in range(22)
        ]
        await client.import_books(stream_of(many), headers=LIBRARIAN)
        queries = [
            pb.SearchBooksRequest(query=tag.upper(), limit=2),
            pb.SearchBooksRequest(query=f"mary {tag}"),
            pb.SearchBooksRequest(query=f"{isbn[:3]}-{isbn[3:8]}-{isbn[8:]}"),
            pb.SearchBooksRequest(query=f"{tag}-MANY"),
            pb.SearchBooksRequest(query=f"{tag}-many", limit=5),
            pb.SearchBooksRequest(query=unique("nothing")),
            pb.SearchBooksRequest(query=f"{tag}%"),
            pb.SearchBooksRequest(query=f"{tag[:-1]}_"),
        ]
        answers = await drain(client.search_books(stream_of(queries)))
    assert [a.query for a in answers] == [q.query for q in queries]
    assert [b.id for b in answers[0].books] == [by_title.id, by_author.id]
    assert [b.id for b in answers[1].books] == [by_author.id]
    assert [b.id for b in answers[2].books] == [by_isbn.id]
    assert len(answers[3].books) == 20
    assert [b.title for b in answers[4].books] == [f"{tag}-many {i}" for i in range(5)]
    # SQL wildcards in a query are plain characters.
    assert [list(a.books) for a in answers[5:]] == [[], [], []]


def test_sync_client_searches(server: ServerProcess) -> None:
    tag = unique()
    with CONNECT_PROTO.sync_client(server.url) as client:
        client.create_book(
            pb.CreateBookRequest(title=tag, author="A", isbn=isbn13()), headers=LIBRARIAN
        )
        answers = list(client.search_books(iter([pb.SearchBooksRequest(query=tag)] * 3)))
    assert [(a.query, len(a.books)) for a in answers] == [(tag, 1)] * 3


async def test_no_queries_no_answers(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        assert await drain(client.search_books(stream_of([]))) == []


async def test_negative_limit_is_invalid_argument(server: ServerProcess) -> None:
    tag = unique()
    async with CONNECT_PROTO.client(server.url) as client:
        await add_book(client, tag)
        answers: list[pb.SearchBooksResponse] = []
        queries = [pb.SearchBooksRequest(query=tag), pb.SearchBooksRequest(query=tag, limit=-1)]

        async def search() -> None:
            async for answer in client.search_books(stream_of(queries)):
                answers.append(answer)

        with pytest.raises(ConnectError) as refused:
            await search()
    assert [a.query for a in answers] == [tag]
    assert refused.value.code is Code.INVALID_ARGUMENT
