"""The README cannot drift: every command block is run by a test or says why not."""

from __future__ import annotations

from tests.readme.readme import Block, unmarked_blocks

LOCALHOST = "localhost:8080"
"""Where the README's calls go; tests point them at their own servers."""
CALLS = (
    "get-book",
    "list-books-get",
    "cache-control",
    "health",
    "checkout",
    "not-found",
    "buf-curl-schema",
)
"""The calls made against ``make serve``, in the README's order."""
TESTED = {
    "make-serve",
    *CALLS,
    "serve-h2c",
    "buf-curl-h2c",
    "tls-cert",
    "serve-tls",
    "tls-calls",
    "pg-try",
    "pg-stop",
    "lb-backends",
    "nginx-conf",
    "lb-calls",
    "tokens",
}
"""Every block the tests in this folder run."""


def test_every_command_block_is_marked() -> None:
    assert unmarked_blocks() == 0, (
        "a ```sh or ```nginx block in README.md has no <!-- test: NAME --> or"
        " <!-- not tested: REASON --> line before it"
    )


def test_every_tested_block_is_run_here(readme: dict[str, Block]) -> None:
    assert set(readme) == TESTED
