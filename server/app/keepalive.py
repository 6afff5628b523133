"""TCP keepalive on accepted connections, so a peer that vanished is noticed.

A live WatchBooks stream may carry nothing for hours, and a client whose
machine went away (no FIN, no RST) would keep its connection and watcher slot
until a write to it failed. The kernel's keepalive probes find it instead:
the first after ``idle_timeout`` seconds without traffic (the same idle bound
as HTTP/2 PINGs under Envoy), then every ``PROBE_INTERVAL`` seconds, and the
connection is closed after ``PROBES`` unanswered ones. A live client's kernel
answers them, whatever the application does.
"""

from __future__ import annotations

import socket

PROBE_INTERVAL = 10
PROBES = 3
MAX_IDLE = 32_767
"""The longest first-probe delay Linux takes (TCP_KEEPIDLE); a longer idle timeout waits this."""


def keepalive_options(idle_timeout: int) -> list[tuple[int, int, int]]:
    """``(level, option, value)`` for setsockopt: keepalive on, probing as above."""
    return [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, min(idle_timeout, MAX_IDLE)),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, PROBE_INTERVAL),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, PROBES),
    ]
