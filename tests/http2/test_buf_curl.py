"""``buf curl`` finds the API by reflection alone (no --schema) and calls it over each protocol."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.buf import run_buf
from tests.support.server import Http2Server


def buf_curl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``buf curl`` over h2c with reflection; never with a schema."""
    return run_buf("curl", "--http2-prior-knowledge", *args, timeout=30)


def test_lists_services_by_reflection(h2_server: Http2Server) -> None:
    result = buf_curl("--list-services", h2_server.url)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) >= {
        "library.v1.LibraryService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    }
    methods = buf_curl("--list-methods", h2_server.url)
    assert methods.returncode == 0, methods.stderr
    assert "library.v1.LibraryService/SearchBooks" in methods.stdout.split()


@pytest.mark.parametrize("protocol", ["connect", "grpc", "grpcweb"])
def test_get_book_over_each_protocol(
    h2_server: Http2Server, new_book: Callable[..., Any], protocol: str
) -> None:
    book = new_book(title=f"Curled over {protocol}")
    url = f"{h2_server.url}/library.v1.LibraryService/GetBook"
    result = buf_curl("--protocol", protocol, "-d", json.dumps({"id": book.id}), url)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)["book"]
    assert (got["id"], got["title"]) == (str(book.id), f"Curled over {protocol}")

    missing = buf_curl("--protocol", protocol, "-d", '{"id": 999999999}', url)
    assert missing.returncode != 0
    assert json.loads(missing.stderr)["code"] == "not_found"
