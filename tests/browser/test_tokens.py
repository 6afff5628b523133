"""The page sends its token only on calls that need a signed-in caller."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Request, expect

from server.domain.auth import Access
from server.rpc.auth import POLICY
from tests.browser.api import LibraryApi
from tests.browser.conftest import OpenPage
from tests.browser.test_page import LIBRARY, book_row, sign_in
from tests.support.server import ServerProcess


def method_of(request: Request) -> str:
    """The RPC a request calls, or "" for anything else (the page, its assets)."""
    path = request.url.split("?")[0]
    return path.rsplit("/", 1)[-1] if LIBRARY in path else ""


def test_public_reads_go_without_the_token(
    server_factory: Callable[..., ServerProcess], open_page: OpenPage
) -> None:
    server = server_factory()
    api = LibraryApi(server.url)
    book = api.add_book("Borrowed by a signed-in reader")
    page = open_page(server.url)
    sign_in(page, api.new_member())
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r) if method_of(r) else None)
    # Reloading while signed in: the list, the stream and WhoAmI all go out
    # with a token at hand.
    page.reload()
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    book_row(page, book.title).get_by_role("button", name=f"Check out {book.title}").click()
    expect(book_row(page, book.title)).to_contain_text("On loan")

    carried: dict[str, set[bool]] = {}
    for request in requests:
        has_token = "authorization" in request.all_headers()
        carried.setdefault(method_of(request), set()).add(has_token)
    # Shared caches store GET responses only for requests without Authorization.
    assert carried["ListBooks"] == {False}
    assert carried["WatchBooks"] == {False}
    assert carried["WhoAmI"] == {True}
    assert carried["CheckoutBook"] == {True}
    # Every call the page made follows the proto's access option, as the server does.
    assert carried == {method: {POLICY[method] is not Access.ANYONE} for method in carried}
