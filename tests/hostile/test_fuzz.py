"""Property: random and mutated bodies, to every method, never kill the server or get a 500.

Hypothesis sends JSON values, mutated valid requests and raw bytes over Connect
(unary POST and GET, streaming envelopes) and gRPC-Web, JSON and binary, with and
without a librarian's token. Every answer must be a well-formed Connect or
gRPC-Web reply whose code is not INTERNAL or UNKNOWN (a bug); the only 5xx allowed
is 503 (UNAVAILABLE: retryable). Derandomized and bounded, so CI sees the same
few hundred cases every run, in seconds.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.gen.library.v1 import library_connect
from server.gen.library.v1 import library_pb as pb
from tests.conftest import ADMIN_TOKEN
from tests.hostile.raw import (
    GRPC_CODES,
    SERVICE,
    Reply,
    Target,
    envelope,
    envelopes,
    get_book_answers,
    send,
)

METHODS = {m.name: m for m in library_connect.LibraryService.desc().methods}
BUGS = {"internal", "unknown"}
GETTABLE = {"GetBook", "ListBooks", "ListLoans", "WhoAmI"}  # NO_SIDE_EFFECTS
# Valid requests, to mutate: each method's input with typical fields set.
SEEDS: dict[str, Any] = {
    "GetBook": pb.GetBookRequest(id=1),
    "ListBooks": pb.ListBooksRequest(page_size=5, query="a", page_token="x"),
    "CreateBook": pb.CreateBookRequest(
        title="T", author="A", isbn="978-0-13-468599-1", published_year=2001
    ),
    "DeleteBook": pb.DeleteBookRequest(id=1),
    "CheckoutBook": pb.CheckoutBookRequest(id=1),
    "ReturnBook": pb.ReturnBookRequest(id=1),
    "ListLoans": pb.ListLoansRequest(active_only=True, page_size=3),
    "CreateMember": pb.CreateMemberRequest(name="N", role=pb.Role.MEMBER),
    "WhoAmI": pb.WhoAmIRequest(),
    "WatchBooks": pb.WatchBooksRequest(since_revision=1),
    "ImportBooks": pb.ImportBooksRequest(title="T", author="A", isbn="0-306-40615-2"),
    "SearchBooks": pb.SearchBooksRequest(query="a", limit=2),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@dataclass(frozen=True)
class Case:
    """One request: method, protocol, encoding, body, signed in or not."""

    method: str
    protocol: str  # "connect", "connect-get" or "grpc-web"
    encoding: str  # "json" or "proto"
    body: bytes
    signed_in: bool


@st.composite
def bodies(draw: st.DrawFn, method: str, encoding: str) -> bytes:
    """A random, mutated or valid body for ``method`` in ``encoding``."""
    seed = SEEDS[method]
    valid = seed.to_json().encode() if encoding == "json" else seed.to_binary()
    kind = draw(st.sampled_from(["random", "mutated", "json-value", "field-values"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "json-value":
        return json.dumps(draw(json_values)).encode()
    if kind == "field-values":
        fields = {key: draw(json_values) for key in json.loads(seed.to_json())}
        return json.dumps(fields).encode()
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 4))]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Any method over any protocol and encoding."""
    method = draw(st.sampled_from(sorted(METHODS)))
    protocols = ["connect", "grpc-web"] + (["connect-get"] if method in GETTABLE else [])
    protocol = draw(st.sampled_from(protocols))
    encoding = draw(st.sampled_from(["json", "proto"]))
    return Case(method, protocol, encoding, draw(bodies(method, encoding)), draw(st.booleans()))


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_every_answer_is_a_valid_reply(target: Target, case: Case) -> None:
    reply = _call(target, case)
    assert reply.status < 500 or reply.status == 503, (case, reply)
    code = _code(case, reply)
    assert code not in BUGS, (case, reply)
    assert target.alive()


def test_the_server_still_answers_after_fuzzing(target: Target) -> None:
    get_book_answers(target, within=2.0)


def _call(target: Target, case: Case) -> Reply:
    path = f"{SERVICE}/{case.method}"
    # Every call ends within a second: WatchBooks never ends by itself.
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"} if case.signed_in else {}
    if case.protocol == "connect-get":
        message = quote(base64.urlsafe_b64encode(case.body).decode())
        query = f"?encoding={case.encoding}&base64=1&message={message}&connect=v1"
        return send(target, path + query, method="GET", headers=headers)
    if case.protocol == "grpc-web":
        headers |= {"content-type": f"application/grpc-web+{case.encoding}", "grpc-timeout": "300m"}
        return send(target, path, envelope(case.body), headers)
    headers["connect-timeout-ms"] = "300"
    if METHODS[case.method].method_kind == "unary":
        headers["content-type"] = f"application/{case.encoding}"
        return send(target, path, case.body, headers)
    headers["content-type"] = f"application/connect+{case.encoding}"
    return send(target, path, envelope(case.body), headers)


def _code(case: Case, reply: Reply) -> str:
    """The reply's error code ("" for success), checking that the reply is well formed."""
    output = getattr(pb, METHODS[case.method].output.name)
    if case.protocol == "grpc-web":
        assert reply.status == 200, reply
        frames = envelopes(reply.body)
        assert frames, reply
        flags, trailer = frames[-1]
        assert flags & 0x80, reply
        fields = dict(line.split(":", 1) for line in trailer.decode().split("\r\n") if ":" in line)
        for _, message in frames[:-1]:
            _decode(output, message, case.encoding)
        return GRPC_CODES[int(fields["grpc-status"].strip())]
    unary = METHODS[case.method].method_kind == "unary"
    if unary and reply.status != 200:
        return str(reply.json()["code"])
    if unary:
        _decode(output, reply.body, case.encoding)
        return ""
    assert reply.status == 200, reply
    frames = envelopes(reply.body)
    flags, end = frames[-1]
    assert flags & 0x02, reply
    for _, message in frames[:-1]:
        _decode(output, message, case.encoding)
    error = json.loads(end).get("error")
    return str(error["code"]) if error else ""


def _decode(output: Any, data: bytes, encoding: str) -> None:
    if encoding == "json":
        output.from_json(data)
    else:
        output.from_binary(data)
