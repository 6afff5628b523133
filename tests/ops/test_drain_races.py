"""The drain period under ``--workers N`` when signals come at awkward times.

A worker still starting when the signal comes, and a supervisor whose copy of
the process group's signal comes late: neither may cut a worker's drain short.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from server.app.serve import SAME_STOP_SECONDS
from tests.multiprocess.procs import workers_of
from tests.ops.test_probes import (
    LONG_DRAIN,
    PROMPTLY,
    add_a_book,
    answer_alone,
    each_worker_says_draining,
    serves_while_not_ready,
)
from tests.support.pausing import paused
from tests.support.server import READY_TIMEOUT, ServerProcess, wait_until

WORKERS = 2
# At info, each worker logs its start and its drain, and the supervisor each signal it passes on.
VERBOSE = {**LONG_DRAIN, "LIBRARY_LOG_LEVEL": "info"}
_SIGTERM_CAUGHT = 1 << (signal.SIGTERM - 1)
_ATTEMPTS = 3


def started_workers(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A ``--workers 2`` server with a long drain period, every worker serving."""
    server = server_factory(args=("--workers", str(WORKERS)), env=VERBOSE)
    wait_until(
        lambda: server.log_text().count("Application startup complete.") == WORKERS,
        READY_TIMEOUT,
        "every worker to start",
    )
    return server


def catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` has a SIGTERM handler (/proc's SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    (mask,) = (line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & _SIGTERM_CAUGHT)


def stop_draining(server: ServerProcess) -> None:
    """Stop a server in its drain period (two requests to stop), promptly and cleanly."""
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    # Heard before the second is sent: a signal still pending would absorb it.
    wait_until(
        lambda: "received SIGTERM: stopping the workers" in server.log_text(),
        PROMPTLY,
        "the supervisor to hear the first",
    )
    assert server.stop() == 0
    assert time.monotonic() - started < PROMPTLY


def replacement_of(server: ServerProcess, victim: int, other: int) -> int:
    """The worker the supervisor starts once ``victim`` is killed (``other`` serves on)."""
    os.kill(victim, signal.SIGKILL)
    fresh: set[int] = set()

    def replaced() -> bool:
        fresh.update(set(workers_of(server.pid)) - {victim, other})
        return bool(fresh)

    wait_until(replaced, READY_TIMEOUT, "the supervisor to start a new worker")
    (new,) = fresh
    return new


def signalled_while_starting(server: ServerProcess, victim: int, other: int) -> int:
    """A worker replacing ``victim``, sent SIGTERM after uvicorn took its signals, before its app.

    uvicorn takes the signals, then imports the app (a few hundred ms): the
    replacement is stopped the moment /proc shows it catching SIGTERM. Should
    the test be too late (its start logged already), it tries again.
    """
    for _ in range(_ATTEMPTS):
        new = replacement_of(server, victim, other)
        wait_until(partial(catches_sigterm, new), READY_TIMEOUT, "a worker to take SIGTERM", 0.001)
        with paused(new):
            os.kill(new, signal.SIGTERM)
            early = f"Started server process [{new}]" not in server.log_text()
        if early:
            return new
        victim = new
    raise AssertionError(f"no worker was caught before its app existed in {_ATTEMPTS} tries")


def test_a_worker_signalled_while_starting_drains(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = started_workers(server_factory)
    victim, other = workers_of(server.pid)
    new = signalled_while_starting(server, victim, other)

    def new_says_draining() -> bool:
        try:
            return answer_alone(server, [new, other]) == (new, 503, "draining\n")
        except (OSError, ValueError):
            return False  # not serving yet, or gone

    # It starts and serves, reporting not ready, as the drain period asks.
    wait_until(new_says_draining, READY_TIMEOUT, "the new worker to serve, draining")
    assert f"Finished server process [{new}]" not in server.log_text()
    stop_draining(server)


def test_a_late_supervisor_does_not_end_the_drain(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = started_workers(server_factory)
    book_id = add_a_book(server.url)
    workers = workers_of(server.pid)
    # The whole group is signalled (systemd's default KillMode), and the supervisor,
    # stopped meanwhile as under load, passes the signal on only well after.
    with paused(server.pid):
        for pid in [server.pid, *workers]:
            os.kill(pid, signal.SIGTERM)
        wait_until(
            lambda: server.log_text().count("then shutting down") == WORKERS,
            PROMPTLY,
            "every worker to start its drain period",
        )
        # The time is the point: the supervisor's copy must come later than this.
        time.sleep(SAME_STOP_SECONDS)
    wait_until(
        lambda: (
            "second signal" in server.log_text()
            or server.log_text().count("stop signal heard again") == WORKERS
        ),
        PROMPTLY,
        "every worker to hear the supervisor's copy",
    )
    assert "second signal" not in server.log_text()
    serves_while_not_ready(server.url, book_id)
    each_worker_says_draining(server, workers)
    assert server.running()
    started = time.monotonic()
    assert server.stop() == 0  # the second SIGTERM
    assert time.monotonic() - started < PROMPTLY
