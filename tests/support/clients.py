"""The generated clients on each wire protocol, plus helpers to sign in and add data."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import pytest
from connectrpc.codec import Codec, proto_binary_codec, proto_json_codec
from connectrpc.protocol import ProtocolType
from protobuf.wkt import Timestamp

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClient, LibraryServiceClientSync
from tests.conftest import ADMIN_TOKEN
from tests.support.data import isbn13

T = TypeVar("T")

STREAM_TIMEOUT_MS = 15_000


def bearer(token: str) -> dict[str, str]:
    """Request headers that sign in with ``token``."""
    return {"authorization": f"Bearer {token}"}


LIBRARIAN = bearer(ADMIN_TOKEN)


@dataclass(frozen=True)
class Wire:
    """One way of putting RPCs on the wire: a protocol and a message encoding."""

    name: str
    protocol: ProtocolType
    codec: Codec

    @property
    def can_get(self) -> bool:
        """Whether NO_SIDE_EFFECTS calls may go out as HTTP GET (Connect only)."""
        return self.protocol is ProtocolType.CONNECT

    def client(self, url: str) -> LibraryServiceClient:
        """An async client speaking this wire protocol."""
        return LibraryServiceClient(url, protocol=self.protocol, codec=self.codec)

    def sync_client(self, url: str) -> LibraryServiceClientSync:
        """A blocking client speaking this wire protocol."""
        return LibraryServiceClientSync(url, protocol=self.protocol, codec=self.codec)


CONNECT_JSON = Wire("connect-json", ProtocolType.CONNECT, proto_json_codec())
CONNECT_PROTO = Wire("connect-proto", ProtocolType.CONNECT, proto_binary_codec())
GRPC_WEB = Wire("grpc-web", ProtocolType.GRPC_WEB, proto_binary_codec())
WIRES = (CONNECT_JSON, CONNECT_PROTO, GRPC_WEB)

over_all_wires = pytest.mark.parametrize("wire", WIRES, ids=[w.name for w in WIRES])
"""Runs a test once per wire protocol, passing the ``Wire`` as ``wire``."""


def unique(prefix: str = "tag") -> str:
    """A word no other test uses: queries on it see only this test's books."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def book_request(tag: str = "", /, **fields: object) -> pb.CreateBookRequest:
    """A valid CreateBookRequest with a fresh ISBN; ``tag`` goes into the title."""
    values: dict[str, object] = {
        "title": f"The Book {tag}".strip(),
        "author": "Ann Author",
        "isbn": isbn13(),
        "published_year": 2001,
    }
    values.update(fields)
    return pb.CreateBookRequest(**values)  # type: ignore[arg-type]


def present(value: T | None) -> T:
    """A message field the contract says a response always carries; fails the test if unset."""
    assert value is not None, "the server left out a field every such response carries"
    return value


async def add_book(client: LibraryServiceClient, tag: str = "", /, **fields: object) -> pb.Book:
    """Create a book as the librarian and return it."""
    return present((await client.create_book(book_request(tag, **fields), headers=LIBRARIAN)).book)


async def get_book(client: LibraryServiceClient, book_id: int) -> pb.Book:
    """The book with ``book_id``, as anyone sees it."""
    return present((await client.get_book(pb.GetBookRequest(id=book_id))).book)


async def checkout(
    client: LibraryServiceClient, book_id: int, headers: dict[str, str]
) -> tuple[pb.Book, pb.Loan]:
    """Borrow a book as the caller with ``headers``; the book and the new loan."""
    out = await client.checkout_book(pb.CheckoutBookRequest(id=book_id), headers=headers)
    return present(out.book), present(out.loan)


async def give_back(
    client: LibraryServiceClient, book_id: int, headers: dict[str, str]
) -> tuple[pb.Book, pb.Loan]:
    """Return a book as the caller with ``headers``; the book and the closed loan."""
    back = await client.return_book(pb.ReturnBookRequest(id=book_id), headers=headers)
    return present(back.book), present(back.loan)


def when(stamp: Timestamp | None) -> datetime:
    """A timestamp field that must be set, as a datetime."""
    return present(stamp).to_datetime()


async def add_books(client: LibraryServiceClient, tag: str, count: int) -> list[pb.Book]:
    """Create ``count`` books whose titles contain ``tag``, in id order."""
    return [await add_book(client, f"{tag} {i}") for i in range(count)]


async def add_member(
    client: LibraryServiceClient, role: pb.Role = pb.Role.MEMBER, name: str | None = None
) -> tuple[pb.Member, dict[str, str]]:
    """Register a member and return it with headers that sign in as it."""
    created = await client.create_member(
        pb.CreateMemberRequest(name=name or unique("member-"), role=role), headers=LIBRARIAN
    )
    return present(created.member), bearer(created.token)


async def stream_of(items: Iterable[T]) -> AsyncIterator[T]:
    """The items as an async stream, for client and bidi streaming calls."""
    for item in items:
        yield item


async def take(stream: AsyncIterator[T], count: int, seconds: float = 10.0) -> list[T]:
    """The next ``count`` messages of a stream, then close it; fail if they take too long."""
    got: list[T] = []
    try:
        async with asyncio.timeout(seconds):
            async for message in stream:
                got.append(message)
                if len(got) == count:
                    break
    finally:
        await aclose(stream)
    return got


async def drain(stream: AsyncIterator[T], seconds: float = 10.0) -> list[T]:
    """Every message of a stream that ends by itself within ``seconds``."""
    async with asyncio.timeout(seconds):
        return [message async for message in stream]


async def aclose(stream: AsyncIterator[object]) -> None:
    """Close a stream we stopped reading, so its connection is released now."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
