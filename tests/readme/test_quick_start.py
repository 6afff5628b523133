"""The README from the top on SQLite: ``make serve``, every call, HTTP/2, TLS, the token commands.

The tests of this module run in order, as a reader would follow the README:
``make serve`` stays up for the calls, and Ctrl+C stops it at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.readme.conftest import REPO, make_sandbox
from tests.readme.readme import (
    Block,
    Foreground,
    assert_shows,
    free_port,
    localize,
    run,
    wait_shows,
)
from tests.readme.test_blocks import CALLS, LOCALHOST


@dataclass
class MadeServe:
    """``make serve`` running on its own port and database, and what it printed."""

    process: Foreground
    port: int
    database: Path
    top: Path
    member_token: str

    @property
    def env(self) -> dict[str, str]:
        """The environment every block of this reader's session runs with."""
        return {"LIBRARY_DATABASE_URL": str(self.database)}

    @property
    def back(self) -> dict[str, str]:
        """Our port and paths as the README writes them."""
        return {f":{self.port}": ":8080"}


@pytest.fixture(scope="module")
def made(readme: dict[str, Block], tmp_path_factory: pytest.TempPathFactory) -> Iterator[MadeServe]:
    """``make serve`` as written, in the repository, with its port and database moved aside."""
    root = tmp_path_factory.mktemp("quick-start")
    port = free_port()
    database = root / "library.db"
    process = Foreground(
        readme["make-serve"].text,
        REPO,
        # As typed in a terminal: not a sub-make of the `make test` running this.
        {
            "LIBRARY_PORT": str(port),
            "LIBRARY_DATABASE_URL": str(database),
            "MAKELEVEL": None,
            "MAKEFLAGS": None,
            "MFLAGS": None,
        },
        root / "make-serve.log",
    )
    try:
        process.wait_serving(f"http://127.0.0.1:{port}")
        token = re.search(r"demo member token: +(lib_\S+)", process.output())
        assert token is not None, process.output()
        yield MadeServe(process, port, database, make_sandbox(root / "top"), token[1])
    finally:
        process.interrupt()


def test_make_serve_prints_the_demo_tokens(made: MadeServe, readme: dict[str, Block]) -> None:
    wait_shows(readme["make-serve"], made.process.output, made.back)


@pytest.mark.parametrize("name", CALLS)
def test_calls(made: MadeServe, readme: dict[str, Block], name: str) -> None:
    block = readme[name]
    replacements = {LOCALHOST: f"localhost:{made.port}"}
    if name == "checkout":
        replacements["lib_..."] = made.member_token
    output = run(localize(block.text, replacements), made.top, made.env)
    assert_shows(block, output, made.back)


def test_tokens(made: MadeServe, readme: dict[str, Block]) -> None:
    output = run(readme["tokens"].text, made.top, made.env)
    assert_shows(readme["tokens"], output)


@contextmanager
def serving(
    made: MadeServe, block: Block, readme_port: int, url: str, cafile: Path | None = None
) -> Iterator[int]:
    """The README's ``block`` started as written but on a free port, checked, and stopped after.

    Yields the port; ``url`` is the server's base URL with ``{port}`` in it.
    """
    port = free_port()
    server = Foreground(
        localize(block.text, {f"--port {readme_port}": f"--port {port}"}),
        made.top,
        made.env,
        made.top / f"{block.name}.log",
    )
    try:
        server.wait_serving(url.format(port=port), cafile=cafile)
        wait_shows(block, server.output, {f":{port}": f":{readme_port}"})
        yield port
    finally:
        assert server.stop() == 0


def test_http2_h2c_and_reflection(made: MadeServe, readme: dict[str, Block]) -> None:
    with serving(made, readme["serve-h2c"], 8080, "http://127.0.0.1:{port}") as port:
        block = readme["buf-curl-h2c"]
        output = run(localize(block.text, {LOCALHOST: f"localhost:{port}"}), made.top, made.env)
        assert_shows(block, output)


def test_http2_over_tls(made: MadeServe, readme: dict[str, Block]) -> None:
    run(readme["tls-cert"].text, made.top, {})
    assert (made.top / "cert.pem").is_file()
    assert (made.top / "key.pem").is_file()
    cafile = made.top / "cert.pem"
    with serving(made, readme["serve-tls"], 8443, "https://localhost:{port}", cafile) as port:
        block = readme["tls-calls"]
        output = run(localize(block.text, {"localhost:8443": f"localhost:{port}"}), made.top, {})
        assert_shows(block, output)


def test_ctrl_c_stops_make_serve(made: MadeServe) -> None:
    made.process.interrupt()
    assert "Finished server process" in made.process.output()
