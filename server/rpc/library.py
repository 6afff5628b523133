"""The LibraryService handlers: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from connectrpc.request import RequestContext

from server.domain import models
from server.domain.book_cache import BookCache
from server.domain.hub import EventHub
from server.domain.library import Library
from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryService
from server.rpc import convert
from server.rpc.auth import current_caller
from server.rpc.caching import CALLER_READ, PUBLIC_READ, allow_caching

Ctx = RequestContext[Any, Any]


class LibraryHandler(LibraryService):
    """Implements ``library.v1.LibraryService``; auth and error codes come from interceptors."""

    def __init__(
        self,
        library: Library,
        hub: EventHub[pb.WatchBooksResponse],
        max_import_failures: int,
        cache: BookCache | None = None,
    ) -> None:
        self._library = library
        self._hub = hub
        self._max_import_failures = max_import_failures
        # The library's book cache, which keeps each cached book's answer beside
        # it until the book changes, so a hit skips the library's coroutine and
        # the conversion. Nothing mutates a response once built.
        self._cache = cache

    async def get_book(self, request: pb.GetBookRequest, ctx: Ctx) -> pb.GetBookResponse:
        """One book by id; a cached book's answer is built once, then handed out as is."""
        cached = self._cache.entry(request.id) if self._cache is not None else None
        if cached is None:
            # Not cached, or the cache may be behind: the library reads it (and caches it).
            answer = pb.GetBookResponse(book=convert.book(await self._library.get_book(request.id)))
        else:
            # The cache's own hit, as Library.get_book would find it, with its answer slot.
            kept = cached.answer
            if isinstance(kept, pb.GetBookResponse):
                answer = kept
            else:
                answer = cached.answer = pb.GetBookResponse(book=convert.book(cached.book))
        allow_caching(ctx, PUBLIC_READ)
        return answer

    async def list_books(self, request: pb.ListBooksRequest, ctx: Ctx) -> pb.ListBooksResponse:
        """A page of the catalogue."""
        page = await self._library.list_books(
            request.page_size, request.page_token, request.query, request.available_only
        )
        allow_caching(ctx, PUBLIC_READ)
        return pb.ListBooksResponse(
            books=[convert.book(b) for b in page.books],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def create_book(self, request: pb.CreateBookRequest, ctx: Ctx) -> pb.CreateBookResponse:
        """Add a book."""
        book = await self._library.create_book(
            request.title, request.author, request.isbn, request.published_year
        )
        return pb.CreateBookResponse(book=convert.book(book))

    async def delete_book(self, request: pb.DeleteBookRequest, ctx: Ctx) -> pb.DeleteBookResponse:
        """Remove a book."""
        await self._library.delete_book(request.id)
        return pb.DeleteBookResponse()

    async def checkout_book(
        self, request: pb.CheckoutBookRequest, ctx: Ctx
    ) -> pb.CheckoutBookResponse:
        """Lend a book to the caller."""
        book, loan = await self._library.checkout_book(current_caller(), request.id)
        return pb.CheckoutBookResponse(book=convert.book(book), loan=convert.loan(loan))

    async def return_book(self, request: pb.ReturnBookRequest, ctx: Ctx) -> pb.ReturnBookResponse:
        """Bring a book back."""
        book, loan = await self._library.return_book(current_caller(), request.id)
        return pb.ReturnBookResponse(book=convert.book(book), loan=convert.loan(loan))

    async def list_loans(self, request: pb.ListLoansRequest, ctx: Ctx) -> pb.ListLoansResponse:
        """A page of the caller's loans (everyone's for a librarian)."""
        page = await self._library.list_loans(
            current_caller(), request.active_only, request.page_size, request.page_token
        )
        allow_caching(ctx, CALLER_READ)
        return pb.ListLoansResponse(
            loans=[convert.loan(item) for item in page.loans],
            next_page_token=page.next_page_token,
        )

    async def create_member(
        self, request: pb.CreateMemberRequest, ctx: Ctx
    ) -> pb.CreateMemberResponse:
        """Register a member and hand out their token."""
        member, token = await self._library.create_member(request.name, convert.role(request.role))
        return pb.CreateMemberResponse(member=convert.member(member), token=token)

    async def who_am_i(self, request: pb.WhoAmIRequest, ctx: Ctx) -> pb.WhoAmIResponse:
        """The caller."""
        allow_caching(ctx, CALLER_READ)
        return pb.WhoAmIResponse(member=convert.member(current_caller()))

    def watch_books(
        self, request: pb.WatchBooksRequest, ctx: Ctx
    ) -> AsyncIterator[pb.WatchBooksResponse]:
        """The change log, live: the hub's stream itself, one generator less per event."""
        return self._hub.watch(request.since_revision)

    async def import_books(
        self, request: AsyncIterator[pb.ImportBooksRequest], ctx: Ctx
    ) -> pb.ImportBooksResponse:
        """Create books as they stream in."""

        async def items() -> AsyncIterator[tuple[str, str, str, int]]:
            async for item in request:
                yield item.title, item.author, item.isbn, item.published_year

        result = await self._library.import_books(items(), self._max_import_failures)
        return pb.ImportBooksResponse(
            created_count=result.created_count,
            failed_count=result.failed_count,
            failures=[
                pb.ImportFailure(index=f.index, isbn=f.isbn, reason=f.reason)
                for f in result.failures
            ],
        )

    async def search_books(
        self, request: AsyncIterator[pb.SearchBooksRequest], ctx: Ctx
    ) -> AsyncIterator[pb.SearchBooksResponse]:
        """One answer per query, in order."""
        async for query in request:
            books = await self._library.search_books(query.query, query.limit)
            yield pb.SearchBooksResponse(query=query.query, books=[convert.book(b) for b in books])


def watch_response(event: models.BookEvent) -> pb.WatchBooksResponse:
    """The message every watcher of ``event`` is sent; the hub builds it once per event."""
    return pb.WatchBooksResponse(event=convert.event(event))
