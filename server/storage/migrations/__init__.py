"""Versioned schema migrations: ``NNNN_name.sql`` files per backend, applied in order."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version and the statements that reach it."""

    version: int
    name: str
    statements: tuple[str, ...]


def load(backend: str) -> list[Migration]:
    """The migrations of ``backend`` ("sqlite" or "postgres"), oldest first."""
    found = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        if entry.name.endswith(".sql"):
            version, _, name = entry.name.removesuffix(".sql").partition("_")
            # Statements end with ';' at the end of a line; none of ours nest one.
            text = entry.read_text(encoding="utf-8")
            statements = tuple(s.strip() for s in text.split(";\n") if s.strip())
            found.append(Migration(int(version), name, statements))
    return sorted(found, key=lambda m: m.version)
