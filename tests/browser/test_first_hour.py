"""What a first visitor notices: one ListBooks on load, adding updates the list, clean banners,
sign-in first on a phone, and the page's reads never served stale from its own cache."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Request, expect

from tests.browser.conftest import OpenPage
from tests.browser.test_page import book_row, sign_in
from tests.conftest import ADMIN_TOKEN
from tests.support.data import isbn13
from tests.support.server import ServerProcess


def test_one_list_request_on_load(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage
) -> None:
    server = server_factory(args=("--demo",))
    page = open_page("about:blank")
    lists: list[Request] = []
    page.on("request", lambda r: lists.append(r) if "/ListBooks" in r.url else None)
    page.goto(server.url)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#summary")).to_have_text("36 books")
    assert len(lists) == 1, [r.url for r in lists]
    # The page asks the server again rather than reuse its cache (a public
    # read may be cached for a second, while the stream moves on).
    assert lists[0].all_headers().get("cache-control") == "max-age=0"


def test_adding_a_book_updates_count_and_list(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage
) -> None:
    server = server_factory(args=("--demo",))
    page = open_page(server.url)
    expect(page.locator("#summary")).to_have_text("36 books")
    sign_in(page, ADMIN_TOKEN)
    expect(page.get_by_role("status").filter(has_text="Welcome")).to_be_visible()

    page.get_by_label("Title", exact=True).fill("The Mythical Library")
    page.get_by_label("Author", exact=True).fill("New Author")
    page.get_by_label("ISBN", exact=True).fill(isbn13())
    page.get_by_role("button", name="Add book").click()
    expect(page.get_by_role("status").filter(has_text="Added")).to_be_visible()
    expect(page.locator("#summary")).to_have_text("37 books")
    expect(page.locator("#page-label")).to_have_text("Page 1 of 4")

    page.get_by_label("Search by title, author or ISBN").fill("New Author")
    page.get_by_role("button", name="Search").click()
    # The search replaces the list, so the message about the last action goes.
    expect(page.locator("#info")).to_be_empty()
    expect(page.locator("#summary")).to_have_text("1 book matching “New Author”")

    page.get_by_label("Title", exact=True).fill("The Mythical Library, Vol. 2")
    page.get_by_label("Author", exact=True).fill("New Author")
    page.get_by_label("ISBN", exact=True).fill(isbn13())
    page.get_by_role("button", name="Add book").click()
    expect(page.locator("#summary")).to_have_text("2 books matching “New Author”")
    expect(book_row(page, "The Mythical Library, Vol. 2")).to_be_visible()


def test_sign_in_comes_before_the_list_on_a_phone(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage
) -> None:
    server = server_factory(args=("--demo",))
    phone = open_page(server.url, width=390, height=844)
    expect(phone.locator("li.book")).to_have_count(10)
    token = phone.get_by_label("Access token").bounding_box()
    books = phone.locator("#books").bounding_box()
    assert token is not None
    assert books is not None
    assert token["y"] + token["height"] < books["y"]
    desk = open_page(server.url)
    expect(desk.locator("li.book")).to_have_count(10)
    side = desk.locator(".side").bounding_box()
    catalogue = desk.locator("#catalogue").bounding_box()
    assert side is not None
    assert catalogue is not None
    assert side["x"] > catalogue["x"] + catalogue["width"] - 1, "on a desk the account is right"
