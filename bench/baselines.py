"""The two reference servers GetBook is measured against, served like production.

``python bench/baselines.py {bare,connect} --fd N --response HEX`` runs one
uvicorn worker (httptools, uvloop) on an inherited listening socket:

- ``bare``: a plain ASGI app that answers every request with fixed bytes, the
  ceiling of the server itself;
- ``connect``: the generated ``LibraryServiceASGIApplication`` with a handler
  whose GetBook returns one message held in memory, the ceiling of connectrpc.

HEX is a binary ``GetBookResponse`` (what the real server answered), so every
server sends the same book.

For the WatchBooks fan-out, both also stream: every open WatchBooks call
receives that book as an event each time anyone calls CreateBook (``bare``:
one pre-encoded Connect frame per stream; ``connect``: a handler yielding the
message to every stream, which connectrpc serialises per stream).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import uvicorn
from connectrpc.request import RequestContext
from starlette.types import ASGIApp, Receive, Scope, Send

from server.app.serve import no_delay_on_inherited_socket
from server.gen.library.v1 import library_connect
from server.gen.library.v1 import library_pb as pb


class Broadcast:
    """Wakes every waiter with the next value fired: the least a fan-out can do."""

    def __init__(self) -> None:
        self._next: asyncio.Future[object] | None = None

    async def wait(self) -> object:
        """The next value fired."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        # Shielded: one waiter cancelled (its client gone) must not cancel the others' wait.
        return await asyncio.shield(self._next)

    def fire(self, value: object) -> None:
        """Wake everyone waiting."""
        if self._next is not None:
            self._next.set_result(value)
            self._next = None


def bare_app(response: pb.GetBookResponse) -> ASGIApp:
    """An ASGI app that reads the request and sends the pre-encoded response."""
    bodies = {
        b"application/proto": response.to_binary(),
        b"application/json": response.to_json().encode(),
    }
    event = pb.WatchBooksResponse(
        event=pb.BookEvent(revision=1, type=pb.EventType.CREATED, book=response.book)
    ).to_binary()
    frame = len(event).to_bytes(5, "big") + event
    broadcast = Broadcast()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        if scope["path"].endswith("/WatchBooks"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/connect+proto")],
                }
            )
            while True:
                await send(
                    {
                        "type": "http.response.body",
                        "body": await broadcast.wait(),
                        "more_body": True,
                    }
                )
        if scope["path"].endswith("/CreateBook"):
            broadcast.fire(frame)
        content_type = dict(scope["headers"]).get(b"content-type", b"application/proto")
        body = bodies.get(content_type, b"")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


class FixedBookHandler(library_connect.LibraryService):
    """GetBook answers with one in-memory message; every other method is unimplemented."""

    def __init__(self, response: pb.GetBookResponse) -> None:
        self._response = response
        self._broadcast = Broadcast()

    async def get_book(
        self,
        request: pb.GetBookRequest,
        ctx: RequestContext[pb.GetBookRequest, pb.GetBookResponse],
        /,
    ) -> pb.GetBookResponse:
        """The same book, whatever was asked."""
        return self._response

    async def create_book(
        self,
        request: pb.CreateBookRequest,
        ctx: RequestContext[pb.CreateBookRequest, pb.CreateBookResponse],
        /,
    ) -> pb.CreateBookResponse:
        """Tell every watcher about the book."""
        self._broadcast.fire(self._response.book)
        return pb.CreateBookResponse(book=self._response.book)

    async def watch_books(
        self,
        request: pb.WatchBooksRequest,
        ctx: RequestContext[pb.WatchBooksRequest, pb.WatchBooksResponse],
        /,
    ) -> AsyncIterator[pb.WatchBooksResponse]:
        """The book as a CREATED event, each time CreateBook is called."""
        revision = request.since_revision
        while True:
            book = await self._broadcast.wait()
            revision += 1
            yield pb.WatchBooksResponse(
                event=pb.BookEvent(revision=revision, type=pb.EventType.CREATED, book=book)  # type: ignore[arg-type]
            )


def main() -> None:
    """Serve one baseline until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["bare", "connect"])
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--response", required=True, help="binary GetBookResponse, hex")
    args = parser.parse_args()
    response = pb.GetBookResponse.from_binary(bytes.fromhex(args.response))
    app: ASGIApp = (
        bare_app(response)
        if args.kind == "bare"
        else library_connect.LibraryServiceASGIApplication(FixedBookHandler(response))
    )
    # Served exactly like the real server, which sets TCP_NODELAY on its inherited socket.
    no_delay_on_inherited_socket(args.fd)
    uvicorn.run(
        app,
        fd=args.fd,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        # The library's default idle_timeout: the fan-out's CreateBook connection
        # waits seconds between calls while 10,000 streams take their events.
        timeout_keep_alive=120,
    )


if __name__ == "__main__":
    main()
