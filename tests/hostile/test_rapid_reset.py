"""HTTP/2 rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, in batches, for a bounded time.

Envoy closes connections that reset too many young streams, a reset stream costs
the app one receive(), and GetBook keeps answering during and right after the attack.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from tests.hostile.conftest import Start
from tests.hostile.raw import SERVICE, Target, envelope, get_book_answers, rss_bytes
from tests.hostile.resets import HEADERS, assert_log_clean, reset_until

ATTACK_SECONDS = 3.0
BATCH = 20


@dataclass
class AttackReport:
    """What one attacker saw."""

    streams: int = 0
    connections: int = 0
    closed_by_server: int = 0
    latencies: list[float] = field(default_factory=list)


def _attack(target: Target, report: AttackReport, stop: threading.Event) -> None:
    while not stop.is_set():
        report.connections += 1
        with socket.create_connection((target.host, target.port), timeout=5) as sock:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            if _reset_batches(sock, conn, report, stop):
                report.closed_by_server += 1


def _reset_batches(
    sock: socket.socket,
    conn: h2.connection.H2Connection,
    report: AttackReport,
    stop: threading.Event,
) -> bool:
    """Send batches until told to stop; True if the server ended the connection first."""
    sock.settimeout(0.01)
    try:
        while not stop.is_set():
            for _ in range(BATCH):
                stream = conn.get_next_available_stream_id()
                conn.send_headers(stream, HEADERS)
                conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
                report.streams += 1
            sock.sendall(conn.data_to_send())
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return True
            events = conn.receive_data(data)
            sock.sendall(conn.data_to_send())
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                return True
    except (OSError, h2.exceptions.ProtocolError):
        return True
    return False


def test_rapid_reset_leaves_get_book_answering(start_target: Start) -> None:
    target = start_target("http2")
    get_book_answers(target, within=2.0)
    before = rss_bytes(target.pid)
    report = AttackReport()
    stop = threading.Event()
    attacker = threading.Thread(target=_attack, args=(target, report, stop), daemon=True)
    attacker.start()
    try:
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            report.latencies.append(get_book_answers(target, within=2.0))
    finally:
        stop.set()
        attacker.join(timeout=10)
    assert not attacker.is_alive()
    assert report.streams > 1_000, report
    # Envoy's premature-reset limit ends such connections early (with Envoy's
    # default limits, about 250 streams per connection got through here).
    assert report.closed_by_server >= 1, report
    assert report.streams / report.connections <= 200, report
    assert get_book_answers(target, within=2.0) < 2.0
    assert target.alive()
    assert rss_bytes(target.pid) - before < 100 * 1024 * 1024
    log = target.log.read_text(errors="replace")
    assert "InvalidStateError" not in log
    assert "Exception in callback" not in log


def test_streams_reset_mid_response_leave_no_errors(start_target: Start) -> None:
    # WatchBooks streams reset while the server sends their snapshot: pyvoy then
    # completed futures the app had given up on, and asyncio logged InvalidStateError.
    target = start_target("http2", {"LIBRARY_DEMO": "1"})
    watch = [
        *HEADERS[:3],
        (":path", f"{SERVICE}/WatchBooks"),
        ("content-type", "application/connect+json"),
    ]
    streams = reset_until(target, watch, envelope(b"{}"), time.monotonic() + ATTACK_SECONDS)
    assert streams > 500
    get_book_answers(target, within=2.0)
    assert target.alive()
    assert_log_clean(target)
