"""Test data through the real API: books, members and loans, made with the generated client."""

from __future__ import annotations

import uuid

from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.conftest import ADMIN_TOKEN
from tests.support.data import isbn13


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class LibraryApi:
    """The calls the browser tests need, against the server at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def add_book(self, title: str, author: str = "Test Author", isbn: str = "") -> pb.Book:
        """Create a book as the admin librarian, with a fresh ISBN unless given one."""
        with LibraryServiceClientSync(self.url) as client:
            request = pb.CreateBookRequest(
                title=title, author=author, isbn=isbn or isbn13(), published_year=2001
            )
            book = client.create_book(request, headers=_auth(ADMIN_TOKEN)).book
        assert book is not None
        return book

    def new_member(self, name: str = "Reader") -> str:
        """Create a member with a unique name and return their token."""
        with LibraryServiceClientSync(self.url) as client:
            request = pb.CreateMemberRequest(
                name=f"{name} {uuid.uuid4().hex[:6]}", role=pb.Role.MEMBER
            )
            return client.create_member(request, headers=_auth(ADMIN_TOKEN)).token

    def checkout(self, book_id: int, token: str) -> None:
        """Check ``book_id`` out as the member with ``token``."""
        with LibraryServiceClientSync(self.url) as client:
            client.checkout_book(pb.CheckoutBookRequest(id=book_id), headers=_auth(token))

    def delete_book(self, book_id: int) -> None:
        """Delete ``book_id`` as the admin librarian."""
        with LibraryServiceClientSync(self.url) as client:
            client.delete_book(pb.DeleteBookRequest(id=book_id), headers=_auth(ADMIN_TOKEN))

    def import_books(self, count: int) -> None:
        """Import ``count`` new books in one ImportBooks stream: ``count`` events, cheaply."""
        items = [
            pb.ImportBooksRequest(title=f"Imported {i}", author="Bulk", isbn=isbn13())
            for i in range(count)
        ]
        with LibraryServiceClientSync(self.url) as client:
            result = client.import_books(iter(items), headers=_auth(ADMIN_TOKEN))
        assert (result.created_count, list(result.failures)) == (count, [])
