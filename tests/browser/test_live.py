"""The page's WatchBooks stream survives a server restart and misses no event."""

from __future__ import annotations

import json
from collections.abc import Callable

from playwright.sync_api import Page, Request, expect

from server.storage.records import PRUNE_EVERY
from tests.browser.api import LibraryApi
from tests.browser.conftest import OpenPage
from tests.browser.test_page import LIBRARY, book_row
from tests.support.server import ServerProcess


def watch_since(request: Request) -> int:
    """The since_revision a WatchBooks request asked for (Connect JSON in one envelope)."""
    body = request.post_data_buffer or b""
    return int(json.loads(body[5:] or b"{}").get("sinceRevision", 0))


def live_state(page: Page) -> str:
    """The connection state the page shows."""
    return page.locator("#live").get_attribute("data-state") or ""


def test_stream_resumes_after_restart_without_missing_events(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage
) -> None:
    server = server_factory()
    api = LibraryApi(server.url)
    while_down = api.add_book("Taken while the server was down")
    after_restart = api.add_book("Taken right after the restart")
    reader = api.new_member()
    page = open_page("about:blank")
    watches: list[Request] = []
    lists: list[Request] = []
    page.on(
        "request", lambda r: watches.append(r) if r.url.endswith(f"{LIBRARY}WatchBooks") else None
    )
    page.on(
        "request",
        lambda r: lists.append(r) if "ListBooks" in r.url and "pageSize%22%3A10" in r.url else None,
    )
    page.goto(server.url)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(book_row(page, while_down.title)).to_contain_text("Available")

    server.stop()
    expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#live")).to_contain_text("Reconnecting")
    seen = int(page.locator("#live").get_attribute("data-revision") or 0)
    assert seen > 0, "the page should resume from the snapshot's revision"
    # Another server on the same database takes the change the page cannot see yet.
    other = server_factory(server.database_url)
    LibraryApi(other.url).checkout(while_down.id, reader)
    other.stop()

    server.restart()
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    api.checkout(after_restart.id, reader)

    expect(book_row(page, while_down.title)).to_contain_text("On loan")
    expect(book_row(page, after_restart.title)).to_contain_text("On loan")
    # Both changes came through the resumed stream, not by reloading the list.
    assert len(lists) == 1, [r.url for r in lists]
    assert watch_since(watches[0]) == 0
    assert watch_since(watches[-1]) == seen


# The server prunes its event log every PRUNE_EVERY revisions, down to this many events.
RETENTION = 5


def test_page_drops_books_deleted_while_its_revision_was_pruned(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage
) -> None:
    retention = {"LIBRARY_EVENT_RETENTION": str(RETENTION)}
    server = server_factory(env=retention)
    api = LibraryApi(server.url)
    kept = api.add_book("Kept on the shelf")
    doomed = api.add_book("Deleted while the page was away")
    reader = api.new_member()
    page = open_page(server.url)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(book_row(page, doomed.title)).to_be_visible()

    server.stop()
    expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    seen = int(page.locator("#live").get_attribute("data-revision") or 0)
    assert seen == 2, "the page should resume from the snapshot's revision"
    # Another server on the same database deletes the book, then takes enough
    # changes that the log is pruned past the page's revision: resuming is
    # OUT_OF_RANGE, and the page can only start over from a snapshot, which
    # has no DELETED events.
    other = server_factory(server.database_url, env=retention)
    other_api = LibraryApi(other.url)
    other_api.delete_book(doomed.id)
    other_api.import_books(PRUNE_EVERY - 3)
    other.stop()

    server.restart()
    expect(book_row(page, doomed.title)).to_have_count(0)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#summary")).to_have_text(f"{PRUNE_EVERY - 2} books")
    api.checkout(kept.id, reader)
    expect(book_row(page, kept.title)).to_contain_text("On loan")
