"""Fixtures for running the README's blocks: the blocks, and a directory to run them in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme.readme import Block, read_blocks

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def readme() -> dict[str, Block]:
    """The README's tested command blocks, by name."""
    return read_blocks()


def make_sandbox(path: Path) -> Path:
    """A directory laid out like the repository's top for the commands a reader runs there.

    ``.venv`` and ``proto`` link to the repository's, so ``.venv/bin/library`` and
    ``buf curl --schema proto`` work as written, while files the blocks make
    (``cert.pem``, ``library.db``) stay out of the repository.
    """
    path.mkdir(parents=True, exist_ok=True)
    for name in (".venv", "proto"):
        (path / name).symlink_to(REPO / name)
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A fresh directory to run README blocks in (see make_sandbox)."""
    return make_sandbox(tmp_path / "top")
