"""Persistence behind one interface, with SQLite and PostgreSQL implementations."""

from __future__ import annotations

from server.domain.storage import Storage


def open_storage(
    database_url: str,
    *,
    event_retention: int,
    pool_size: int = 10,
    max_queued_writes: int = 10_000,
) -> Storage:
    """The storage for ``database_url``: a ``postgresql://`` URL, or a SQLite file path.

    ``pool_size`` bounds the connections a PostgreSQL storage opens for reads (SQLite uses
    one); ``max_queued_writes`` the writes either's writer holds before refusing more.
    """
    if database_url.startswith(("postgresql://", "postgres://")):
        from server.storage.postgres import PostgresStorage

        return PostgresStorage(
            database_url,
            event_retention=event_retention,
            pool_size=pool_size,
            max_queued_writes=max_queued_writes,
        )
    from server.storage.sqlite import SQLiteStorage

    return SQLiteStorage(
        database_url.removeprefix("sqlite://"),
        event_retention=event_retention,
        max_queued_writes=max_queued_writes,
    )
