"""The ASGI lifespan reports a failed shutdown to the server instead of hiding it."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from server.app.asgi import LibraryApp
from server.app.collector import YOUNG_THRESHOLD
from server.app.settings import Settings
from server.app.wiring import storage_for

pytestmark = pytest.mark.anyio


async def _lifespan(app: LibraryApp) -> list[dict[str, Any]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": kind})

    async def send(message: Any) -> None:
        sent.append(message)

    await asyncio.wait_for(app({"type": "lifespan"}, inbox.get, send), timeout=30)
    return sent


async def test_closing_storage_that_raises_is_shutdown_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=str(tmp_path / "library.db"))
    storage = storage_for(settings)
    close = storage.close

    async def broken_close() -> None:
        await close()
        raise OSError("disk went away")

    monkeypatch.setattr(storage, "close", broken_close)
    sent = await _lifespan(LibraryApp(settings, storage))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.failed"]
    assert "disk went away" in sent[1]["message"]


async def test_a_clean_shutdown_is_complete(tmp_path: Path) -> None:
    app = LibraryApp(Settings(database_url=str(tmp_path / "library.db")))
    sent = await _lifespan(app)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_the_collector_is_settled_while_serving_and_restored_after(tmp_path: Path) -> None:
    app = LibraryApp(Settings(database_url=str(tmp_path / "library.db")))
    before = gc.get_threshold(), gc.get_freeze_count()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    serving = asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, outbox.put))
    assert (await asyncio.wait_for(outbox.get(), 30))["type"] == "lifespan.startup.complete"
    # Start-up's objects leave every later collection; the young are collected less often.
    assert gc.get_freeze_count() > before[1] + 10_000
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    inbox.put_nowait({"type": "lifespan.shutdown"})
    await asyncio.wait_for(serving, 30)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
