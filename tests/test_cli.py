"""The ``library`` command: token commands on both backends, and one-line start-up failures."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from server.app.settings import Settings
from server.gen.library.v1 import library_pb as pb
from server.gen.library.v1.library_connect import LibraryServiceClientSync
from tests.support.clients import bearer
from tests.support.server import ServerProcess

SECRET = "hunter2-not-for-logs"
# How long a server may trust a token lookup by default, which the README promises.
TOKEN_TRUST = Settings.model_fields["token_cache_seconds"].default
# How long past that bound a test waits for a refusal before it fails.
WAIT_SECONDS = 10.0


def library(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``library ARGS`` (as ``python -m server``) and capture what it says."""
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def who_is(url: str, token: str) -> str:
    """The name WhoAmI gives for ``token``; raises the ConnectError otherwise."""
    with LibraryServiceClientSync(url) as client:
        member = client.who_am_i(pb.WhoAmIRequest(), headers=bearer(token)).member
    assert member is not None
    return member.name


def refused_within(url: str, token: str, changed: float, bound: float) -> None:
    """Call WhoAmI with ``token`` until it is refused; no call started ``bound`` s after
    ``changed`` (a monotonic time after the change committed) may be let in."""
    deadline = changed + bound + WAIT_SECONDS
    while True:
        started = time.monotonic()
        try:
            who_is(url, token)
        except ConnectError as e:
            refusal = e.code
            break
        late = started - changed
        assert late < bound, f"a call started {late:.3f} s after the change still got in"
        assert started < deadline
    assert refusal is Code.UNAUTHENTICATED


def test_token_commands(
    database_factory: Callable[[], str], server_factory: Callable[..., ServerProcess]
) -> None:
    database = database_factory()
    created = library("create-librarian", "Ada Lovelace", "--database", database)
    assert created.returncode == 0, created.stderr
    first = created.stdout.strip()
    server = server_factory(database)
    # The server now trusts this lookup for up to TOKEN_TRUST seconds.
    assert who_is(server.url, first) == "Ada Lovelace"

    again = library("create-librarian", "Ada Lovelace", "--database", database)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "Error: a member named 'Ada Lovelace' exists already;"
        " to give them a new token: library reissue-token 'Ada Lovelace'"
    )

    reissued = library("reissue-token", "Ada Lovelace", "--database", database)
    changed = time.monotonic()
    assert reissued.returncode == 0, reissued.stderr
    second = reissued.stdout.strip()
    # A new token works at once; the old one stops within the bound.
    assert who_is(server.url, second) == "Ada Lovelace"
    refused_within(server.url, first, changed, TOKEN_TRUST)

    assert who_is(server.url, second) == "Ada Lovelace"
    revoked = library("revoke-token", "Ada Lovelace", "--database", database)
    changed = time.monotonic()
    assert revoked.returncode == 0, revoked.stderr
    refused_within(server.url, second, changed, TOKEN_TRUST)

    for command in ("reissue-token", "revoke-token"):
        unknown = library(command, "Nobody", "--database", database)
        assert (unknown.returncode, unknown.stderr) == (1, "Error: no member is called 'Nobody'\n")


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed start printed, checked to be all it printed."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"LIBRARY_CORS_ORIGINS": "*"}, "--cors-origin / LIBRARY_CORS_ORIGINS: '*' is not allowed"),
        ({"LIBRARY_CORS_ORIGINS": "example.com"}, "'example.com' is not an origin"),
        ({"LIBRARY_CORS_ORIGINS": "https://a.example/"}, "no path"),
        ({"LIBRARY_PORT": "eighty"}, "--port / LIBRARY_PORT: must be a whole number"),
        ({"LIBRARY_PORT": "70000"}, "--port / LIBRARY_PORT: must be at most 65535"),
        ({"LIBRARY_ADMIN_TOKEN": SECRET}, "LIBRARY_ADMIN_TOKEN: must be at least 32 characters"),
        ({"LIBRARY_LOG_LEVEL": "loud"}, "LIBRARY_LOG_LEVEL: must be one of 'critical'"),
        (
            {"LIBRARY_HTTP2": "1", "LIBRARY_TLS_CERT": "no.pem", "LIBRARY_TLS_KEY": "no.key"},
            "--tls-cert / LIBRARY_TLS_CERT: cannot read 'no.pem'",
        ),
        (
            {"LIBRARY_DATABASE_URL": f"postgresql://library:{SECRET}@db.invalid/library"},
            "cannot open the database (PostgreSQL postgresql://library:***@db.invalid/library):",
        ),
        ({"LIBRARY_DATABASE_URL": "/no/such/dir/library.db"}, "unable to open database file"),
    ],
)
def test_bad_settings_end_in_one_line(env: dict[str, str], says: str, tmp_path: Path) -> None:
    # Each of these fails before listening; one that did not would time out here.
    defaults = {"LIBRARY_DATABASE_URL": "x.db", "LIBRARY_PORT": "0"}
    result = library("serve", env={**defaults, **env}, cwd=tmp_path)
    line = one_line_failure(result)
    assert says in line
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_port_in_use_is_one_line(http2: bool, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args = ["serve", "--port", port, "--database", str(tmp_path / "x.db")]
        result = library(*args, *(["--http2"] if http2 else []))
    assert one_line_failure(result) == (
        f"Error: --port / LIBRARY_PORT: port {port} on 127.0.0.1 is in use by another program;"
        " stop it or choose another port"
    )


def test_start_up_logs_the_database_it_opens(tmp_path: Path) -> None:
    result = library(
        "serve",
        "--port",
        "0",
        "--database",
        "missing/library.db",
        env={"LIBRARY_LOG_LEVEL": "info"},
        cwd=tmp_path,
    )
    assert f"INFO:library:database: SQLite file {tmp_path}/missing/library.db (new)" in (
        result.stderr.splitlines()
    )


def test_help_and_readme_agree_on_log_levels() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `LIBRARY_LOG_LEVEL`"))
    documented = re.findall(r"`([a-z]+)`", row.split("|")[4])
    help_text = library("serve", "--help").stdout
    offered = re.search(r"--log-level \[([a-z|]+)\]", help_text)
    assert offered is not None, help_text
    assert offered[1].split("|") == documented


def test_http2_fails_at_once_when_envoy_refuses_to_start(tmp_path: Path) -> None:
    # A certificate Envoy cannot load fails every attempt alike: no retry, Envoy's reason shown.
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    tls = ["--tls-cert", str(garbage), "--tls-key", str(garbage)]
    args = ["serve", "--http2", "--port", "0", "--database", str(tmp_path / "x.db"), *tls]
    result = library(*args)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "Error: Envoy did not start; its log above says why"
    assert result.stderr.count(f"Failed to load certificate chain from {garbage}") >= 1
    assert "trying another" not in result.stderr
    assert "Traceback" not in result.stderr
    # One Envoy ran: each logs its config error once at critical level.
    assert result.stderr.count("[critical][main]") == 1
