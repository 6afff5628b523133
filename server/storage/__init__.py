"""Persistence behind one interface, with SQLite and PostgreSQL implementations."""

from __future__ import annotations

from server.storage.base import Storage


def open_storage(database_url: str, *, event_retention: int) -> Storage:
    """The storage for ``database_url``: a ``postgresql://`` URL, or a SQLite file path."""
    if database_url.startswith(("postgresql://", "postgres://")):
        from server.storage.postgres import PostgresStorage

        return PostgresStorage(database_url, event_retention=event_retention)
    from server.storage.sqlite import SQLiteStorage

    return SQLiteStorage(database_url.removeprefix("sqlite://"), event_retention=event_retention)
