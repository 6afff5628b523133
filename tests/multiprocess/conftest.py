"""Fixtures: several server processes sharing one database, as behind a load balancer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.server import ServerFactory, ServerProcess

StartServers = Callable[..., list[ServerProcess]]


@pytest.fixture
def start_servers(servers: ServerFactory) -> Iterator[StartServers]:
    """Starts ``count`` servers on one fresh database at once; stops them after the test.

    They start concurrently, so their migrations race too: the second and
    later starters must wait for the first instead of failing.
    """
    these = servers.child()

    def start(count: int, *, args: tuple[str, ...] = ()) -> list[ServerProcess]:
        first = these.make(ServerProcess, args=args)
        made = [first] + [
            these.make(ServerProcess, first.database_url, args=args) for _ in range(count - 1)
        ]
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(ServerProcess.start, made))
        return made

    yield start
    these.stop_all()
