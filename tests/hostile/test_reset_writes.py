"""Writes and snapshots on threads meet HTTP/2 streams reset around them: Envoy stays up.

SQLite writes run on the process's writer thread, which answers the event loop
with ``call_soon_threadsafe``; snapshot pages are read on threads. Here
CreateBook streams are reset right after their request, WatchBooks streams
mid-snapshot, while a client keeps creating books: every book it was told
about is there afterwards.
"""

from __future__ import annotations

import json
import threading
import time

from tests.conftest import ADMIN_TOKEN
from tests.hostile.conftest import Start
from tests.hostile.raw import JSON, SERVICE, Target, envelope, get_book_answers, send
from tests.hostile.resets import HEADERS, assert_log_clean, reset_until
from tests.support.data import isbn13

ATTACK_SECONDS = 3.0
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def _create_book_body() -> bytes:
    return json.dumps(
        {"title": "Reset", "author": "R", "isbn": isbn13(), "publishedYear": 2001}
    ).encode()


def _attack(target: Target, deadline: float, streams: list[int]) -> None:
    create = [*HEADERS[:3], (":path", f"{SERVICE}/CreateBook"), HEADERS[4], *AUTH.items()]
    watch = [
        *HEADERS[:3],
        (":path", f"{SERVICE}/WatchBooks"),
        ("content-type", "application/connect+json"),
    ]
    while time.monotonic() < deadline:
        streams.append(reset_until(target, create, _create_book_body(), time.monotonic() + 0.3))
        streams.append(reset_until(target, watch, envelope(b"{}"), time.monotonic() + 0.3))


def test_writes_during_reset_streams_are_kept_and_envoy_stays_up(start_target: Start) -> None:
    target = start_target("http2", {"LIBRARY_DEMO": "1"})
    deadline = time.monotonic() + ATTACK_SECONDS
    streams: list[int] = []
    attacker = threading.Thread(target=_attack, args=(target, deadline, streams), daemon=True)
    attacker.start()
    created: list[str] = []
    try:
        while time.monotonic() < deadline:
            reply = send(target, f"{SERVICE}/CreateBook", _create_book_body(), {**JSON, **AUTH})
            assert reply.status == 200, reply
            book = reply.json()["book"]
            assert isinstance(book, dict)
            created.append(book["id"])
    finally:
        attacker.join(timeout=10)
    assert not attacker.is_alive()
    assert sum(streams) > 500, streams
    assert len(created) > 10
    assert target.alive()
    for book_id in created:
        reply = send(target, f"{SERVICE}/GetBook", json.dumps({"id": book_id}).encode(), JSON)
        assert reply.status == 200, reply
    get_book_answers(target, within=2.0)
    assert_log_clean(target)
