"""Storage and the Library built from the settings, the one way every entry point does it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from server.app.settings import Settings
from server.domain.book_cache import BookCache
from server.domain.library import Library
from server.domain.paging import PageTokens
from server.domain.storage import Storage
from server.domain.token_cache import TokenCache
from server.storage import open_storage


def storage_for(settings: Settings) -> Storage:
    """The (unopened) storage the settings name."""
    return open_storage(
        settings.database_url,
        event_retention=settings.event_retention,
        pool_size=settings.db_pool_size,
        max_queued_writes=settings.max_queued_writes,
    )


async def library_for(
    settings: Settings, storage: Storage, cache: BookCache | None = None
) -> Library:
    """The Library over an opened ``storage``; GetBook answers from ``cache`` when it can.

    Token lookups are trusted for ``settings.token_cache_seconds`` (see ``TokenCache``);
    at 0 every call asks the storage.
    """
    return Library(
        storage,
        PageTokens(await storage.signing_key()),
        timedelta(days=settings.loan_days),
        cache,
        TokenCache(settings.token_cache_seconds) if settings.token_cache_seconds else None,
    )


@asynccontextmanager
async def opened_library(settings: Settings) -> AsyncIterator[Library]:
    """A Library over freshly opened (and migrated) storage, closed on exit."""
    storage = storage_for(settings)
    await storage.open()
    try:
        yield await library_for(settings, storage)
    finally:
        await storage.close()
