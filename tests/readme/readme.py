"""The README's command blocks, read from README.md, and ways to run them as written.

A block to run is preceded by ``<!-- test: NAME -->``; what it should print follows
in a block preceded by ``<!-- test: NAME shows -->``, where ``...`` stands for any
text (doctest's ELLIPSIS, which is also how a reader takes it). A command block
the tests do not run says why in ``<!-- not tested: REASON -->``.

The blocks name ports (8080, 8443), hosts (10.0.0.x, 0.0.0.0), the ``lib_...``
token placeholder and certificate paths as a reader would use them; a test swaps
those for its own with ``localize``, and nothing else.
"""

from __future__ import annotations

import doctest
import os
import re
import signal
import socket
import ssl
import subprocess
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.server import ManagedProcess, health

README = Path(__file__).resolve().parents[2] / "README.md"
COMMAND_LANGUAGES = ("sh", "nginx")
READY_TIMEOUT = 60.0
_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)<!-- (?P<kind>test|not tested): ?(?P<label>[^>]*?) ?-->\n+"
    r"(?P=indent)```(?P<lang>\w*)\n(?P<body>.*?)\n(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)
_ANY_BLOCK = re.compile(r"^[ \t]*```(\w+)\n", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """A command block and, if the README gives one, what it should print."""

    name: str
    lang: str
    text: str
    shows: str | None


def read_blocks(path: Path = README) -> dict[str, Block]:
    """The README's tested blocks by name."""
    text = path.read_text()
    commands: dict[str, tuple[str, str]] = {}
    outputs: dict[str, str] = {}
    for match in _BLOCK.finditer(text):
        body = textwrap.dedent(match["body"])
        if match["kind"] == "not tested":
            continue
        name, _, shows = match["label"].partition(" ")
        if shows == "shows":
            outputs[name] = body
        else:
            commands[name] = (match["lang"], body)
    blocks = {
        name: Block(name, lang, body, outputs.pop(name, None))
        for name, (lang, body) in commands.items()
    }
    assert not outputs, f"'shows' blocks without a command block: {sorted(outputs)}"
    return blocks


def unmarked_blocks(path: Path = README) -> int:
    """How many command blocks carry neither a test nor a not-tested marker."""
    text = path.read_text()
    every = sum(1 for m in _ANY_BLOCK.finditer(text) if m[1] in COMMAND_LANGUAGES)
    return every - sum(1 for m in _BLOCK.finditer(text) if m["lang"] in COMMAND_LANGUAGES)


def localize(text: str, replacements: Mapping[str, str]) -> str:
    """``text`` with each key replaced by its value, in order; every key must occur."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is not in the README block:\n{text}"
        text = text.replace(old, new)
    return text


_ACCESS_LINE = re.compile(r"time=\S+ procedure=")


def assert_shows(block: Block, output: str, replacements: Mapping[str, str] = {}) -> None:
    """Check ``output`` against what the README says ``block`` prints.

    ``replacements`` map the test's own values back to the README's (ports, paths).
    """
    assert block.shows is not None, f"the README does not say what {block.name} prints"
    for ours, readmes in replacements.items():
        output = output.replace(ours, readmes)
    # A server's access lines depend on the calls the test made to see it up (its
    # readiness probes); the README describes them under "Operating it".
    output = "".join(line for line in output.splitlines(True) if not _ACCESS_LINE.match(line))
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    want = block.shows + "\n"
    if not checker.check_output(want, output, flags):
        example = doctest.Example(block.name, want)
        raise AssertionError(checker.output_difference(example, output, flags))


def wait_shows(
    block: Block,
    output: Callable[[], str],
    replacements: Mapping[str, str] = {},
    within: float = 10.0,
) -> None:
    """``assert_shows`` once the output has caught up: a server may answer before it prints."""
    deadline = time.monotonic() + within
    while True:
        try:
            assert_shows(block, output(), replacements)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def environment(env: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment with ``env`` on top; a None value removes that variable."""
    merged: dict[str, str | None] = {**os.environ, **env}
    return {name: value for name, value in merged.items() if value is not None}


def run(text: str, cwd: Path, env: Mapping[str, str | None], **popen: Any) -> str:
    """Run a block's commands with bash, stopping at the first failure; return what it printed."""
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", text],
        cwd=cwd,
        env=environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
        **popen,
    )
    assert result.returncode == 0, f"exit {result.returncode}:\n{text}\n---\n{result.stdout}"
    return str(result.stdout)


def free_port() -> int:
    """A port nothing listens on right now (the README's commands take a --port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Foreground(ManagedProcess):
    """A block whose last command runs until Ctrl+C (a server), in its own process group."""

    def __init__(
        self, text: str, cwd: Path, env: Mapping[str, str | None], log: Path, **popen: Any
    ) -> None:
        super().__init__(log)
        self._spawn(
            ["bash", "-c", text],
            environment({"PYTHONUNBUFFERED": "1", **env}),
            own_group=True,
            cwd=cwd,
            **popen,
        )

    def output(self) -> str:
        """What it printed so far."""
        return self.log_text()

    def wait_serving(self, url: str, cafile: Path | None = None) -> None:
        """Wait until the health check at ``url`` answers SERVING."""
        context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
        self.wait_ready(lambda: health(url, context) == "SERVING", url, READY_TIMEOUT)

    def interrupt(self, sig: int = signal.SIGINT) -> int:
        """Ctrl+C: ``sig`` to the whole process group, as a terminal sends it; the exit code."""
        return self.stop(sig)
