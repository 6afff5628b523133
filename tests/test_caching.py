"""Cache-Control on Connect GETs: public reads briefly, the caller's reads and errors never."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from server.rpc.caching import CALLER_READ, PUBLIC_READ
from tests.conftest import ADMIN_TOKEN
from tests.support.server import ServerProcess

SERVICE = "/library.v1.LibraryService"
SIGNED_IN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def cache_control(
    server: ServerProcess, method: str, message: object, *, get: bool = True, **headers: str
) -> tuple[int, str | None]:
    """The status and Cache-Control of one call, as a Connect GET or a POST."""
    body = json.dumps(message)
    if get:
        query = urllib.parse.urlencode({"encoding": "json", "message": body})
        request = urllib.request.Request(f"{server.url}{SERVICE}/{method}?{query}", headers=headers)
    else:
        headers = {"content-type": "application/json", **headers}
        url = f"{server.url}{SERVICE}/{method}"
        request = urllib.request.Request(url, body.encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("cache-control")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("cache-control")


def test_public_reads_may_be_cached_for_a_second(server: ServerProcess) -> None:
    assert PUBLIC_READ == "public, max-age=1"
    assert cache_control(server, "ListBooks", {"pageSize": 1}) == (200, PUBLIC_READ)
    # Even when a token comes along: the answer is the same for everyone.
    assert cache_control(server, "ListBooks", {}, authorization=SIGNED_IN["authorization"]) == (
        200,
        PUBLIC_READ,
    )


@pytest.mark.parametrize("method", ["WhoAmI", "ListLoans"])
def test_the_callers_own_reads_are_never_stored(server: ServerProcess, method: str) -> None:
    token = SIGNED_IN["authorization"]
    assert cache_control(server, method, {}, authorization=token) == (200, CALLER_READ)


def test_errors_and_posts_carry_no_caching(server: ServerProcess) -> None:
    assert cache_control(server, "GetBook", {"id": 10**12}) == (404, None)
    assert cache_control(server, "WhoAmI", {}) == (401, None)
    assert cache_control(server, "ListBooks", {}, get=False) == (200, None)
