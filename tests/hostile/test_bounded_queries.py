"""A search query is bounded: past MAX_QUERY_LENGTH characters it is refused before any work."""

from __future__ import annotations

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.domain.library import MAX_QUERY_LENGTH
from server.gen.library.v1 import library_pb as pb
from tests.hostile.raw import Target
from tests.support.clients import CONNECT_JSON

LONGEST = "a" * MAX_QUERY_LENGTH
# 4 MiB, the largest message: matched, it held the event loop for ~150 ms.
HUGE = "a" * (4 * 1024 * 1024 - 64)


def test_a_query_at_the_bound_is_answered(target: Target) -> None:
    with CONNECT_JSON.sync_client(target.url) as client:
        assert client.list_books(pb.ListBooksRequest(query=LONGEST)).total_size == 0
        (answer,) = client.search_books(iter([pb.SearchBooksRequest(query=LONGEST)]))
    assert answer.query == LONGEST
    assert list(answer.books) == []


@pytest.mark.parametrize("query", [LONGEST + "a", HUGE], ids=["one-more", "4MiB"])
def test_a_longer_query_is_invalid(target: Target, query: str) -> None:
    says = f"query is limited to {MAX_QUERY_LENGTH} characters, got {len(query)}"
    with CONNECT_JSON.sync_client(target.url) as client:
        with pytest.raises(ConnectError) as listed:
            client.list_books(pb.ListBooksRequest(query=query))
        with pytest.raises(ConnectError) as searched:
            list(client.search_books(iter([pb.SearchBooksRequest(query=query)])))
    for raised in (listed, searched):
        assert raised.value.code is Code.INVALID_ARGUMENT
        assert raised.value.message == says
