"""Compression is negotiated per call on the HTTP/2 port: zstd, br, gzip, or none."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import brotli
import grpc
import pytest
import zstandard
from connectrpc.client import ResponseMetadata
from connectrpc.compression.gzip import GzipCompression
from connectrpc.protocol import ProtocolType

from server.gen.library.v1 import library_pb as connect_pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.http2.stubs import GrpcStubs
from tests.support.server import Http2Server


def test_grpcio_gzip_request(
    h2_server: Http2Server, grpc_stubs: GrpcStubs, new_book: Callable[..., Any]
) -> None:
    book = new_book(title="Squeezed")
    with grpc.insecure_channel(h2_server.target, compression=grpc.Compression.Gzip) as channel:
        got = grpc_stubs.library(channel).GetBook(
            grpc_stubs.pb.GetBookRequest(id=book.id), timeout=10
        )
    assert got.book.title == "Squeezed"


@pytest.mark.parametrize(
    ("protocol", "header"),
    [(ProtocolType.GRPC, "grpc-encoding"), (ProtocolType.CONNECT, "connect-content-encoding")],
)
def test_streamed_responses_come_back_gzipped(
    h2_client: Callable[..., LibraryServiceClientSync],
    new_book: Callable[..., Any],
    protocol: ProtocolType,
    header: str,
) -> None:
    book = new_book(title="Zipped Stream")

    def requests() -> Iterator[connect_pb.SearchBooksRequest]:
        yield connect_pb.SearchBooksRequest(query=book.isbn)

    with ResponseMetadata() as meta:
        answers = list(gzip_only(h2_client, protocol).search_books(requests()))
    assert [[b.title for b in a.books] for a in answers] == [["Zipped Stream"]]
    assert meta.headers.get(header) == "gzip"


DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "br": brotli.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
}


# The client's order of preference wins among what the server supports.
@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("br, gzip", "br"),
        ("lz4, zstd, gzip", "zstd"),
    ],
)
def test_connect_unary_negotiates_compression(
    h2_server: Http2Server, new_book: Callable[..., Any], accept: str, chosen: str
) -> None:
    book = new_book(title="Plain HTTP")
    body = json.dumps({"id": book.id}).encode()

    def post(headers: dict[str, str], data: bytes = body) -> Any:
        request = urllib.request.Request(
            f"{h2_server.url}/library.v1.LibraryService/GetBook",
            data=data,
            headers={"content-type": "application/json", **headers},
        )
        return urllib.request.urlopen(request, timeout=10)

    with post({"accept-encoding": accept, "content-encoding": "gzip"}, gzip.compress(body)) as r:
        assert r.headers["content-encoding"] == chosen
        assert json.loads(DECOMPRESS[chosen](r.read()))["book"]["title"] == "Plain HTTP"
    with pytest.raises(urllib.error.HTTPError) as caught:
        post({"content-encoding": "lz4"})
    assert caught.value.code == 501
    error = json.loads(caught.value.read())
    assert error["code"] == "unimplemented"
    assert "gzip" in error["message"]


def gzip_only(
    h2_client: Callable[..., LibraryServiceClientSync], protocol: ProtocolType
) -> LibraryServiceClientSync:
    """A client that sends gzip and accepts only gzip."""
    return h2_client(
        protocol, send_compression=GzipCompression(), accept_compression=[GzipCompression()]
    )
