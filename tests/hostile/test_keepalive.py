"""A quiet connection is probed by TCP keepalive, so a client that vanished is noticed.

A WatchBooks stream may carry nothing for hours; without keepalive, a client
whose machine went away would hold its connection and watcher slot until a
write to it failed. The kernel says which timer a socket has armed
(/proc/net/tcp: 2 is keepalive), so the test reads it for the server's end of
a quiet WatchBooks connection, on both transports.
"""

from __future__ import annotations

import os
from pathlib import Path

from server.gen.library.v1 import library_pb as pb
from tests.hostile.raw import SERVICE, Target, connect, envelope
from tests.support.server import wait_until

IDLE_TIMEOUT = 120  # The servers' LIBRARY_IDLE_TIMEOUT: the first probe's delay.
KEEPALIVE_TIMER = 2


def server_end_timer(server_port: int, client_port: int) -> tuple[int, int] | None:
    """The armed timer of the server's end of a loopback connection, and when it fires.

    (timer kind, clock ticks until it fires), or None if no such connection is open.
    """
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if (local_port, remote_port) == (server_port, client_port):
            kind, when = fields[5].split(":")
            return int(kind, 16), int(when, 16)
    return None


def test_a_quiet_watch_connection_is_probed(target: Target) -> None:
    body = envelope(pb.WatchBooksRequest(since_revision=1 << 40).to_binary())
    head = (
        f"POST {SERVICE}/WatchBooks HTTP/1.1\r\nHost: {target.host}\r\n"
        f"Content-Type: application/connect+proto\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with connect(target) as sock:
        sock.sendall(head.encode() + body)
        client_port = sock.getsockname()[1]
        # Once the request is acknowledged and nothing is in flight, the one timer
        # armed on a quiet connection is keepalive's (none without it).
        wait_until(
            lambda: (server_end_timer(target.port, client_port) or (0, 0))[0] == KEEPALIVE_TIMER,
            10,
            "the server's end of the connection to arm its keepalive timer",
        )
        timer = server_end_timer(target.port, client_port)
        assert timer is not None
        assert 0 < timer[1] <= IDLE_TIMEOUT * os.sysconf("SC_CLK_TCK")
