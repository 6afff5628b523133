"""Authentication and authorization for every RPC, then the write gate's turns: one interceptor."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from connectrpc.request import RequestContext
from protobuf import DescMethod, DescService

from server.domain.auth import Access, authorize
from server.domain.errors import Unauthenticated
from server.domain.library import Library
from server.domain.models import Member
from server.gen.library.v1 import access_pb, library_connect
from server.rpc.errors import BoundedErrorMessages, to_connect_error
from server.rpc.write_gate import WriteGate

# The proto's (library.v1.access) values, as the domain's access rules.
_ACCESS: dict[access_pb.Access, Access] = {
    access_pb.Access.ANYONE: Access.ANYONE,
    access_pb.Access.SIGNED_IN: Access.SIGNED_IN,
    access_pb.Access.LIBRARIAN: Access.LIBRARIAN,
}


def declared_access(method: DescMethod) -> Access | None:
    """The method's (library.v1.access) option; None when unset or ACCESS_UNSPECIFIED."""
    options = method.proto.options
    if options is None or access_pb.ext_access not in options:
        return None
    return _ACCESS.get(options[access_pb.ext_access])


def policy_of(service: DescService) -> dict[str, Access]:
    """Who may call each method of ``service``, from each method's (library.v1.access) option.

    A method without one fails this (and so the server's import), so a new RPC
    cannot ship unguarded.
    """
    policy = {m.name: declared_access(m) for m in service.methods}
    unguarded = sorted(name for name, access in policy.items() if access is None)
    if unguarded:
        raise ValueError(
            f"no access policy for {unguarded} of {service.type_name}: "
            "set option (library.v1.access) on every rpc"
        )
    return {name: access for name, access in policy.items() if access is not None}


# Who may call each LibraryService method; the proto is the one source (the page
# reads the same option to know which calls go without a token).
POLICY: dict[str, Access] = policy_of(library_connect.LibraryService.desc())

_caller: ContextVar[Member | None] = ContextVar("caller", default=None)


def current_caller() -> Member:
    """The signed-in member of the RPC being handled (set by AuthInterceptor)."""
    caller = _caller.get()
    if caller is None:
        raise Unauthenticated("this call needs a token: send 'Authorization: Bearer <token>'")
    return caller


class AuthInterceptor(BoundedErrorMessages):
    """Resolves the bearer token and enforces POLICY before the request body is read.

    A write then waits for its turn at ``gate`` (after auth, so a caller without
    a valid token is refused, not parked). It also cuts error messages
    (``on_end``, inherited). One metadata interceptor instead of three, as every
    call pays connectrpc for each of them.
    """

    def __init__(self, library: Library, gate: WriteGate) -> None:
        # Every method has an entry: POLICY is read from the very service descriptor
        # the app serves, and policy_of refuses one without an access option.
        self._library = library
        # The methods anyone may call: one set lookup on every call.
        self._open = frozenset(name for name, access in POLICY.items() if access is Access.ANYONE)
        self._gate = gate
        self._held = gate.writes

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        """Authenticate the caller if the method needs it, check their role, then queue a write."""
        name = ctx.method.name
        if name in self._open:
            # No caller here; the task may carry one from an earlier call. Set only
            # then: setting a context variable costs more than reading it.
            if _caller.get() is not None:
                _caller.set(None)
        else:
            try:
                caller = await self._authenticate(ctx.request_headers.get("authorization", ""))
                authorize(caller, POLICY[name])
            except Exception as e:
                # This runs before DomainErrorInterceptor, so it maps errors itself,
                # through the one mapping both share.
                raise to_connect_error(e) from e
            _caller.set(caller)
        if name in self._held:
            # Its refusal message is its own and short, so needs no bounding.
            await self._gate.take_turn()

    async def _authenticate(self, header: str) -> Member | None:
        """The caller, None without a token; a token nobody holds is refused here."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        member = await self._library.authenticate(token.strip())
        if member is None:
            raise Unauthenticated("the token was not recognised: sign in again with a valid one")
        return member
