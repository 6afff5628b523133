"""Starting Envoy: a new admin port when another process took the chosen one, nothing else retried.

The admin port is picked free just before Envoy binds it, so another process can
take it in between. The race is made certain here by handing Envoy a port this
test holds; a failure that is no race is in ``tests/test_cli.py``.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from server.app import envoy_config
from server.app.serve_http2 import DrainSignal, start_envoy
from server.app.settings import Settings

pytestmark = pytest.mark.anyio


async def test_envoy_takes_another_admin_port_when_its_own_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = f"127.0.0.1:{taken.getsockname()[1]}"
        # The first port picked is the held one; the next ones are free ports as usual.
        picks = iter([taken.getsockname()[1]])
        free_port = envoy_config.free_loopback_port
        monkeypatch.setattr(
            envoy_config, "free_loopback_port", lambda: next(picks, 0) or free_port()
        )
        settings = Settings(http2=True, port=0, database_url=str(tmp_path / "library.db"))
        drain = DrainSignal(tmp_path / "drain.sock")
        await drain.start()
        caplog.set_level(logging.WARNING, "library")
        try:
            server = await start_envoy(settings, drain)
            try:
                assert server.admin_address != held
                assert server.listener_port > 0
            finally:
                await server.stop()
        finally:
            await drain.close()
    assert f"another process took Envoy's admin address {held}; trying another" in caplog.text
