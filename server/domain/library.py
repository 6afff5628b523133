"""The library's use cases: catalogue, loans and members, with their rules."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.domain import paging
from server.domain.auth import hash_token, new_token, revoked_token_hash
from server.domain.book_cache import BookCache
from server.domain.errors import DomainError, InvalidArgument, NotFound, input_prefix
from server.domain.isbn import normalize_isbn
from server.domain.models import Book, BookFilter, Loan, Member, NewBook, Role
from server.domain.storage import Storage
from server.domain.token_cache import TokenCache

DEFAULT_SEARCH_LIMIT = 20
MAX_TITLE_LENGTH = 500
MAX_NAME_LENGTH = 200
# Far past any title, author and ISBN together (a longer query can hardly match), and
# short enough that matching it costs the event loop nothing (4 MiB took ~150 ms).
MAX_QUERY_LENGTH = 1000
FIRST_PRINTING_YEAR = 1450
# Unicode's control characters (category Cc) are exactly C0, DEL and C1; one
# regular expression finds them ~10x faster than asking unicodedata per character.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class BookPage:
    """One page of books, the token of the next one, and the size of the whole listing."""

    books: Sequence[Book]
    next_page_token: str
    total_size: int


@dataclass(frozen=True, slots=True)
class LoanPage:
    """One page of loans and the token of the next one."""

    loans: Sequence[Loan]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class ImportFailure:
    """An imported item that was not created, and why."""

    index: int
    isbn: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import created, how many items it refused, and the first of them."""

    created_count: int
    failures: Sequence[ImportFailure]
    failed_count: int


def validate_new_book(title: str, author: str, isbn: str, published_year: int) -> NewBook:
    """Check a book's fields and return it normalized, or raise InvalidArgument."""
    title, author = title.strip(), author.strip()
    if not title:
        raise InvalidArgument("title is required")
    if not author:
        raise InvalidArgument("author is required")
    if len(title) > MAX_TITLE_LENGTH or len(author) > MAX_TITLE_LENGTH:
        raise InvalidArgument(f"title and author are limited to {MAX_TITLE_LENGTH} characters")
    _refuse_control_characters("title", title)
    _refuse_control_characters("author", author)
    if not isbn.strip():
        raise InvalidArgument("isbn is required")
    this_year = datetime.now(UTC).year
    if published_year != 0 and not FIRST_PRINTING_YEAR <= published_year <= this_year + 1:
        raise InvalidArgument(
            f"published_year must be between {FIRST_PRINTING_YEAR} and {this_year + 1}"
            f" (or 0 if unknown), got {published_year}"
        )
    return NewBook(title, author, normalize_isbn(isbn), published_year)


class Library:
    """Every operation of the service, given the caller where it matters."""

    def __init__(
        self,
        storage: Storage,
        tokens: paging.PageTokens,
        loan_period: timedelta,
        cache: BookCache | None = None,
        token_cache: TokenCache | None = None,
    ) -> None:
        self._storage = storage
        self._tokens = tokens
        self._loan_period = loan_period
        self._cache = cache
        self._token_cache = token_cache

    async def get_book(self, book_id: int) -> Book:
        """The book with ``book_id``; NotFound otherwise."""
        if self._cache is None:
            book = await self._storage.get_book(book_id)
        else:
            book = self._cache.get(book_id)
            if book is None:
                put = self._cache.read_through()
                book = await self._storage.get_book(book_id)
                if book is not None:
                    put(book)
        if book is None:
            raise NotFound(f"book {book_id} does not exist")
        return book

    async def list_books(self, size: int, token: str, query: str, available_only: bool) -> BookPage:
        """A page of books in id order, filtered by ``query`` and availability."""
        limit = paging.page_size(size)
        where = BookFilter(_bounded_query(query), available_only)
        scope = f"books:{where.query}:{where.available_only}"
        after_id = self._tokens.after_id(scope, token)
        if _matches_nothing(where):
            return BookPage([], "", 0)
        books = await self._storage.list_books(where, after_id, limit + 1)
        total = await self._storage.count_books(where)
        next_token = self._tokens.issue(scope, books[limit - 1].id) if len(books) > limit else ""
        return BookPage(books[:limit], next_token, total)

    async def search_books(self, query: str, limit: int) -> Sequence[Book]:
        """The first ``limit`` books (0 means 20) matching ``query``."""
        if limit < 0:
            raise InvalidArgument(f"limit must not be negative, got {limit}")
        limit = min(limit or DEFAULT_SEARCH_LIMIT, paging.MAX_PAGE_SIZE)
        where = BookFilter(_bounded_query(query))
        if _matches_nothing(where):
            return []
        return await self._storage.list_books(where, 0, limit)

    async def create_book(self, title: str, author: str, isbn: str, published_year: int) -> Book:
        """Validate and add a book."""
        new = validate_new_book(title, author, isbn, published_year)
        return await self._storage.create_book(new, _now())

    async def import_books(
        self, items: AsyncIterator[tuple[str, str, str, int]], max_listed: int
    ) -> ImportResult:
        """Create each valid item as it arrives; count the bad ones, list the first few.

        Memory stays bounded however long the stream: at most ``max_listed``
        failures are kept, each quoting a short prefix of its ISBN.
        """
        created = 0
        failed = 0
        failures: list[ImportFailure] = []
        index = 0
        async for title, author, isbn, year in items:
            try:
                await self._storage.create_book(
                    validate_new_book(title, author, isbn, year), _now()
                )
                created += 1
            except DomainError as e:
                failed += 1
                if len(failures) < max_listed:
                    failures.append(ImportFailure(index, input_prefix(isbn), e.message))
            index += 1
        return ImportResult(created, failures, failed)

    async def delete_book(self, book_id: int) -> None:
        """Remove a book that is not on loan."""
        await self._storage.delete_book(book_id, _now())

    async def checkout_book(self, caller: Member, book_id: int) -> tuple[Book, Loan]:
        """Lend a book to ``caller``, due after the loan period."""
        now = _now()
        return await self._storage.checkout_book(book_id, caller.id, now, now + self._loan_period)

    async def return_book(self, caller: Member, book_id: int) -> tuple[Book, Loan]:
        """Close a book's loan; only its borrower or a librarian may."""
        borrower = None if caller.role is Role.LIBRARIAN else caller.id
        return await self._storage.return_book(book_id, borrower, _now())

    async def list_loans(
        self, caller: Member, active_only: bool, size: int, token: str
    ) -> LoanPage:
        """A page of loans: the caller's own, or everyone's for a librarian."""
        limit = paging.page_size(size)
        member_id = None if caller.role is Role.LIBRARIAN else caller.id
        scope = f"loans:{member_id}:{active_only}"
        after_id = self._tokens.after_id(scope, token)
        loans = await self._storage.list_loans(member_id, active_only, after_id, limit + 1)
        next_token = self._tokens.issue(scope, loans[limit - 1].id) if len(loans) > limit else ""
        return LoanPage(loans[:limit], next_token)

    async def create_member(self, name: str, role: Role | None) -> tuple[Member, str]:
        """Register a member (a plain member unless told otherwise) and return their token."""
        name = name.strip()
        if not name:
            raise InvalidArgument("name is required")
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidArgument(f"name is limited to {MAX_NAME_LENGTH} characters")
        _refuse_control_characters("name", name)
        token = new_token()
        member = await self._storage.create_member(
            name, role or Role.MEMBER, hash_token(token), _now()
        )
        return member, token

    async def put_member_token(self, name: str, role: Role, token: str) -> Member:
        """Make sure ``name`` exists with ``role`` and exactly ``token`` (admin secret, demo)."""
        try:
            return await self._storage.put_member(name, role, hash_token(token), _now())
        finally:
            self._forget_tokens()

    async def reissue_token(self, name: str) -> tuple[Member, str]:
        """Give the member called ``name`` a fresh token; their old one stops working."""
        token = new_token()
        return await self._set_token_hash(name, hash_token(token)), token

    async def revoke_token(self, name: str) -> Member:
        """Make the member called ``name`` unable to sign in until a token is reissued."""
        return await self._set_token_hash(name, revoked_token_hash())

    async def _set_token_hash(self, name: str, token_hash: str) -> Member:
        try:
            member = await self._storage.set_token_hash(name, token_hash)
        finally:
            self._forget_tokens()
        if member is None:
            raise NotFound(f"no member is called {name!r}")
        return member

    async def authenticate(self, token: str) -> Member | None:
        """The member holding ``token``, or None; from the token cache while it is trusted."""
        token_hash = hash_token(token)
        if self._token_cache is None:
            return await self._storage.member_by_token_hash(token_hash)
        member = self._token_cache.get(token_hash)
        if member is None:
            put = self._token_cache.read_through(token_hash)
            member = await self._storage.member_by_token_hash(token_hash)
            if member is not None:
                put(member)
        return member

    def _forget_tokens(self) -> None:
        # Also when the write failed: it may have committed all the same.
        if self._token_cache is not None:
            self._token_cache.forget_all()


def _refuse_control_characters(field: str, value: str) -> None:
    # Every backend must store the same names; PostgreSQL text cannot even hold NUL.
    if _has_control_characters(value):
        raise InvalidArgument(f"{field} must not contain control characters (such as NUL or tab)")


def _bounded_query(query: str) -> str:
    """``query`` stripped, or InvalidArgument past MAX_QUERY_LENGTH characters."""
    if len(query) > MAX_QUERY_LENGTH:
        raise InvalidArgument(
            f"query is limited to {MAX_QUERY_LENGTH} characters, got {len(query)}"
        )
    return query.strip()


def _matches_nothing(where: BookFilter) -> bool:
    # No stored title, author or ISBN holds a control character (see above).
    return _has_control_characters(where.query)


def _has_control_characters(value: str) -> bool:
    return _CONTROL_CHARACTER.search(value) is not None


def _now() -> datetime:
    return datetime.now(UTC)
