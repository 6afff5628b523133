"""A page on another origin may use the API only when that origin is allowed."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect

from tests.browser.api import LibraryApi
from tests.browser.conftest import OpenPage, StaticOrigin
from tests.browser.test_page import book_row, sign_in
from tests.support.server import ServerProcess


def test_allowed_origin_can_browse_sign_in_and_check_out(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage, second_origin: StaticOrigin
) -> None:
    server = server_factory(
        env={"LIBRARY_CORS_ORIGINS": f"https://elsewhere.example,{second_origin.url}"}
    )
    second_origin.point_at(server.url)
    api = LibraryApi(server.url)
    book = api.add_book("Borrowed from afar")

    page = open_page(second_origin.url)
    assert page.evaluate("location.origin") != server.url
    expect(book_row(page, book.title)).to_contain_text("Available")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    # Authorization and JSON POSTs need a preflight that the server must approve.
    sign_in(page, api.new_member())
    book_row(page, book.title).get_by_role("button", name=f"Check out {book.title}").click()
    expect(book_row(page, book.title)).to_contain_text("On loan")


def test_other_origins_are_refused(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage, second_origin: StaticOrigin
) -> None:
    server = server_factory(env={"LIBRARY_CORS_ORIGINS": "https://elsewhere.example"})
    second_origin.point_at(server.url)
    LibraryApi(server.url).add_book("Not for strangers")

    page = open_page("about:blank")
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "CORS policy" in m.text else None)
    page.goto(second_origin.url)

    expect(page.get_by_role("alert")).to_contain_text("cannot be reached")
    expect(page.locator("#summary")).to_have_text("The books could not be loaded.")
    expect(page.locator("li.book")).to_have_count(0)
    assert any(second_origin.url in text for text in blocked), blocked
