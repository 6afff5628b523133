"""``buf curl`` with the local protos as schema, against the running server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.buf import run_buf
from tests.support.clients import CONNECT_PROTO, add_book
from tests.support.server import ServerProcess

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]


def buf_curl(
    server: ServerProcess, method: str, data: dict[str, object]
) -> subprocess.CompletedProcess[str]:
    """Run ``buf curl --schema proto`` for one LibraryService method."""
    return run_buf(
        "curl",
        "--schema",
        "proto",
        "--data",
        json.dumps(data),
        f"{server.url}/library.v1.LibraryService/{method}",
        cwd=ROOT,
    )


async def test_get_book(server: ServerProcess) -> None:
    async with CONNECT_PROTO.client(server.url) as client:
        book = await add_book(client, title="Buf Curl")
    result = buf_curl(server, "GetBook", {"id": book.id})
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)["book"]
    assert (got["id"], got["title"], got["isbn"]) == (str(book.id), "Buf Curl", book.isbn)


def test_not_found(server: ServerProcess) -> None:
    result = buf_curl(server, "GetBook", {"id": 10**12})
    assert result.returncode != 0
    error = json.loads(result.stderr)
    assert error["code"] == "not_found"
    assert str(10**12) in error["message"]


def test_list_books_with_a_bad_page_size(server: ServerProcess) -> None:
    result = buf_curl(server, "ListBooks", {"pageSize": -1})
    assert result.returncode != 0
    assert json.loads(result.stderr)["code"] == "invalid_argument"
