"""Fixtures: several server processes sharing one database, as behind a load balancer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support.server import ServerProcess

StartServers = Callable[..., list[ServerProcess]]


@pytest.fixture
def start_servers(database_factory: Callable[[], str], tmp_path: Path) -> Iterator[StartServers]:
    """Starts ``count`` servers on one fresh database at once; stops them after the test.

    They start concurrently, so their migrations race too: the second and
    later starters must wait for the first instead of failing.
    """
    started: list[ServerProcess] = []

    def start(count: int, *, args: tuple[str, ...] = ()) -> list[ServerProcess]:
        url = database_factory()
        servers = [
            ServerProcess(
                url,
                tmp_path / f"server-{len(started) + i}.log",
                args=args,
                env={"LIBRARY_ADMIN_TOKEN": ADMIN_TOKEN},
            )
            for i in range(count)
        ]
        started.extend(servers)
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(ServerProcess.start, servers))
        return servers

    yield start
    for server in started:
        server.stop()
