"""Freezing processes for a while (SIGSTOP), as a hung server or a stalled worker would be."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.support.server import wait_until

# Far longer than a signal takes to stop a process, however busy the machine.
_STOP_SECONDS = 10.0


def state(pid: int) -> str:
    """The process's state letter in /proc ("T" once stopped), or "" if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name in parentheses may hold spaces; the state follows it.
    return stat.rsplit(")", 1)[1].split()[0]


@contextmanager
def paused(*pids: int) -> Iterator[None]:
    """``pids`` stopped (each seen stopped before this enters), and continued on exit."""
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for pid in pids:
            wait_until(lambda pid=pid: state(pid) in ("T", ""), _STOP_SECONDS, f"{pid} stopped")
        yield
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
