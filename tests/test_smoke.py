"""The server starts and answers a call through the generated client."""

from __future__ import annotations

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.conftest import ADMIN_TOKEN
from tests.support.data import isbn13
from tests.support.server import ServerProcess


def test_create_then_get(server: ServerProcess) -> None:
    with LibraryServiceClientSync(server.url) as client:
        created = client.create_book(
            pb.CreateBookRequest(
                title="Smoke", author="Tester", isbn=isbn13(), published_year=2020
            ),
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        ).book
        assert created is not None
        got = client.get_book(pb.GetBookRequest(id=created.id), use_get=True).book
    assert got is not None
    assert got.title == "Smoke"
    assert got.available
