"""The page, served by the server, in a real Chromium: browse, search, sign in, check out."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, Route, expect

from tests.browser.api import LibraryApi
from tests.browser.conftest import OpenPage
from tests.conftest import ADMIN_TOKEN
from tests.support.server import ServerProcess

LIBRARY = "/library.v1.LibraryService/"


def book_row(page: Page, title: str) -> Locator:
    """The list item showing ``title``."""
    return page.locator("li.book", has=page.get_by_role("heading", name=title, exact=True))


def sign_in(page: Page, token: str) -> None:
    """Paste ``token`` into the sign-in form and wait until the page knows who we are."""
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_lists_pages_and_searches(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage, artifacts_dir: Path
) -> None:
    server = server_factory(args=("--demo",))
    methods: dict[str, set[str]] = {}
    page = open_page(server.url)
    page.on(
        "request",
        lambda r: methods.setdefault(r.url.split("?")[0].rsplit("/", 1)[-1], set()).add(r.method),
    )
    page.reload()

    expect(page.locator("#summary")).to_have_text("36 books")
    expect(page.locator("li.book")).to_have_count(10)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#page-label")).to_have_text("Page 1 of 4")

    page.get_by_role("button", name="Next →").click()
    expect(page.locator("#page-label")).to_have_text("Page 2 of 4")
    expect(page.locator("li.book")).to_have_count(10)
    page.get_by_role("button", name="← Previous").click()
    expect(book_row(page, "The Pragmatic Programmer")).to_be_visible()

    page.get_by_label("Search by title, author or ISBN").fill("tolkien")
    page.keyboard.press("Enter")
    expect(page.locator("#summary")).to_have_text("1 book matching “tolkien”")
    expect(book_row(page, "The Hobbit")).to_contain_text("Available")

    # NO_SIDE_EFFECTS methods go out as cacheable GETs; the stream is a POST.
    assert methods["ListBooks"] == {"GET"}
    assert methods["WatchBooks"] == {"POST"}

    page.get_by_label("Search by title, author or ISBN").fill("")
    page.get_by_role("button", name="Search").click()
    sign_in(page, ADMIN_TOKEN)
    expect(page.locator("#who")).to_have_text("admin")
    book_row(page, "Clean Code").get_by_role("button", name="Check out Clean Code").click()
    expect(book_row(page, "Clean Code")).to_contain_text("On loan")
    expect(page.get_by_role("status").filter(has_text="checked out")).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "page.png"))

    phone = open_page(server.url, width=390, height=844)
    expect(book_row(phone, "Clean Code")).to_contain_text("On loan")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px wide)"
    phone.screenshot(path=str(artifacts_dir / "page-phone.png"))


def test_a_live_book_shows_when_a_search_would_list_it(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage
) -> None:
    server = server_factory()
    api = LibraryApi(server.url)
    page = open_page(server.url)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    query = "978-0-201"  # stored ISBNs have no hyphens; the server matches without them
    page.get_by_label("Search by title, author or ISBN").fill(query)
    page.keyboard.press("Enter")
    expect(page.locator("#summary")).to_have_text(f"No books matching “{query}”.")

    api.add_book("Elsewhere")
    api.add_book("Design Patterns", isbn="978-0-201-63361-0")
    expect(book_row(page, "Design Patterns")).to_be_visible()
    expect(book_row(page, "Elsewhere")).to_have_count(0)
    expect(page.locator("#summary")).to_have_text(f"1 book matching “{query}”")
    # A fresh search from the server lists the same.
    page.get_by_role("button", name="Search").click()
    expect(page.locator("li.book")).to_have_count(1)
    expect(book_row(page, "Design Patterns")).to_be_visible()


def test_checkout_shows_in_another_page_within_a_second(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage
) -> None:
    server = server_factory()
    api = LibraryApi(server.url)
    title = "Shared copy"
    api.add_book(title)
    reader = open_page(server.url)
    watcher = open_page(server.url)
    for page in (reader, watcher):
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
    sign_in(reader, api.new_member())
    expect(book_row(watcher, title)).to_contain_text("Available")

    book_row(reader, title).get_by_role("button", name=f"Check out {title}").click()
    expect(book_row(reader, title)).to_contain_text("On loan")
    expect(book_row(watcher, title)).to_contain_text("On loan", timeout=1000)


def test_checking_out_a_taken_book_says_so(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage
) -> None:
    server = server_factory()
    api = LibraryApi(server.url)
    book = api.add_book("Contested copy")
    page = open_page("about:blank")
    # Hold the page's stream back so it still shows the book as available when
    # someone else takes it: the race a visitor can lose. The request is left
    # pending rather than failed: a failed stream is retried, and a retry from a
    # snapshot reloads the list, which would show the loan before the click.
    held: list[Route] = []
    page.route(f"**{LIBRARY}WatchBooks", lambda route: held.append(route))
    page.goto(server.url)
    # The list comes from ListBooks and shows even with no stream at all.
    expect(book_row(page, book.title)).to_contain_text("Available")
    sign_in(page, api.new_member())

    api.checkout(book.id, api.new_member())
    book_row(page, book.title).get_by_role("button", name=f"Check out {book.title}").click()

    expect(page.get_by_role("alert")).to_have_text("Someone else has this book.")
    expect(book_row(page, book.title)).to_contain_text("On loan")


def test_page_and_assets_have_types_and_cache_headers(server: ServerProcess) -> None:
    with urllib.request.urlopen(server.url + "/") as response:
        html = response.read().decode()
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)
    assert sorted(a.rsplit(".", 1)[-1] for a in assets) == ["css", "js"]
    for asset in assets:
        request = urllib.request.Request(server.url + asset, headers={"accept-encoding": "gzip"})
        with urllib.request.urlopen(request) as response:
            body = response.read()
            kind = "javascript" if asset.endswith(".js") else "css"
            assert response.headers["content-type"] == f"text/{kind}; charset=utf-8"
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert response.headers["content-encoding"] == "gzip"
        if kind == "javascript":
            assert len(body) < 60_000, f"the bundle is {len(body)} bytes gzipped"
