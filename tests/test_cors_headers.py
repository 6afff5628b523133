"""The CORS headers a browser and a shared cache see, for allowed and other origins."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message

import pytest

from tests.support.server import ServerProcess

ALLOWED = "https://page.example"
GET_BOOK = "/library.v1.LibraryService/GetBook?encoding=json&message=%7B%22id%22%3A1%7D"


@pytest.fixture(scope="module")
def cors_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(env={"LIBRARY_CORS_ORIGINS": f"https://other.example,{ALLOWED}"})


def call(server: ServerProcess, method: str = "GET", **headers: str) -> tuple[int, Message]:
    """The status and headers of GetBook (or a preflight for it)."""
    request = urllib.request.Request(f"{server.url}{GET_BOOK}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def test_an_allowed_origin_may_read_the_answer_and_its_status(cors_server: ServerProcess) -> None:
    status, headers = call(cors_server, origin=ALLOWED)
    assert status in (200, 404)
    assert headers["access-control-allow-origin"] == ALLOWED
    assert "grpc-status" in headers["access-control-expose-headers"]
    assert "Origin" in headers.get_all("vary", [])
    assert headers["access-control-allow-credentials"] is None


@pytest.mark.parametrize("origin", [None, "https://stranger.example"])
def test_other_requests_get_no_grant_but_tell_caches_it_depends(
    cors_server: ServerProcess, origin: str | None
) -> None:
    status, headers = call(cors_server, **({"origin": origin} if origin else {}))
    assert status in (200, 404)
    assert headers["access-control-allow-origin"] is None
    assert "Origin" in headers.get_all("vary", [])


def test_preflights_are_approved_for_allowed_origins_only(cors_server: ServerProcess) -> None:
    ask = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    status, headers = call(cors_server, "OPTIONS", origin=ALLOWED, **ask)
    assert status == 200
    assert headers["access-control-allow-origin"] == ALLOWED
    assert "authorization" in headers["access-control-allow-headers"].lower()
    status, headers = call(cors_server, "OPTIONS", origin="https://stranger.example", **ask)
    assert status == 400
    assert headers["access-control-allow-origin"] is None
