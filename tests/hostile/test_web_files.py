"""The web directory serves the built page only: dotfiles are never found."""

from __future__ import annotations

import pytest

from tests.hostile.raw import Target, send


@pytest.mark.parametrize(
    "path",
    ["/.env", "/assets/.app.js.swp", "/.git/config", "/.git/", "/%2eenv", "/assets/%2Eapp.js.swp"],
)
def test_dotfiles_are_not_found(target: Target, path: str) -> None:
    reply = send(target, path, method="GET")
    assert reply.status == 404, reply
    assert b"SECRET" not in reply.body
    assert b"swap" not in reply.body


@pytest.mark.parametrize("path", ["/", "/index.html", "/assets/app.js"])
def test_the_built_files_are_served(target: Target, path: str) -> None:
    assert send(target, path, method="GET").status == 200
