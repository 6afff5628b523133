"""Authentication and authorization for every RPC, in one interceptor."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from connectrpc.request import RequestContext

from server.domain.auth import Access, authorize
from server.domain.errors import Unauthenticated
from server.domain.library import Library
from server.domain.models import Member
from server.rpc.errors import BoundedErrorMessages, to_connect_error

# Who may call each LibraryService method. A method missing here is refused
# at start-up (see AuthInterceptor), so a new RPC cannot ship unguarded.
POLICY: dict[str, Access] = {
    "GetBook": Access.ANYONE,
    "ListBooks": Access.ANYONE,
    "CreateBook": Access.LIBRARIAN,
    "DeleteBook": Access.LIBRARIAN,
    "CheckoutBook": Access.SIGNED_IN,
    "ReturnBook": Access.SIGNED_IN,
    "ListLoans": Access.SIGNED_IN,
    "CreateMember": Access.LIBRARIAN,
    "WhoAmI": Access.SIGNED_IN,
    "WatchBooks": Access.ANYONE,
    "ImportBooks": Access.LIBRARIAN,
    "SearchBooks": Access.ANYONE,
}

_caller: ContextVar[Member | None] = ContextVar("caller", default=None)


def current_caller() -> Member:
    """The signed-in member of the RPC being handled (set by AuthInterceptor)."""
    caller = _caller.get()
    if caller is None:
        raise Unauthenticated("this call needs a token: send 'Authorization: Bearer <token>'")
    return caller


class AuthInterceptor(BoundedErrorMessages):
    """Resolves the bearer token and enforces POLICY before the request body is read.

    It also cuts error messages (``on_end``, inherited): one metadata interceptor
    instead of two, as every call pays connectrpc for each of them.
    """

    def __init__(self, library: Library, method_names: set[str]) -> None:
        unguarded = method_names - POLICY.keys()
        if unguarded:
            raise ValueError(f"no access policy for {sorted(unguarded)}")
        self._library = library

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        """Authenticate the caller if the method needs it, and check their role."""
        access = POLICY[ctx.method.name]
        if access is Access.ANYONE:
            _caller.set(None)
            return
        try:
            caller = await self._authenticate(ctx.request_headers.get("authorization", ""))
            authorize(caller, access)
        except Exception as e:
            # This runs before DomainErrorInterceptor, so it maps errors itself,
            # through the one mapping both share.
            raise to_connect_error(e) from e
        _caller.set(caller)

    async def _authenticate(self, header: str) -> Member | None:
        """The caller, None without a token; a token nobody holds is refused here."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        member = await self._library.authenticate(token.strip())
        if member is None:
            raise Unauthenticated("the token was not recognised: sign in again with a valid one")
        return member
