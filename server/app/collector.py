"""Python's garbage collector, settled for a long-running server after start-up.

A full collection walks every tracked object, and after start-up most of them
are modules, classes and functions that live as long as the process: over
~70,000 objects it paused the event loop for 95-130 ms every few seconds under
write load, which was GetBook's p99 beside writes. Freezing them moves them out
of every later collection. Young objects are nearly all freed by reference
counting (a request's messages, contexts, futures), so collecting the youngest
generation every 700 net allocations mostly finds nothing: a larger first
threshold does the same work less often, at the cost of keeping at most that
many cyclic garbage objects a little longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Net allocations of tracked objects between young collections (Python's default: 700)."""


class SettledCollector:
    """Settles the collector while the app serves; puts it back as it was at shutdown.

    The collector is the process's, and a process may serve several apps (tests,
    ``bench/in_process.py``): the first to settle it settles it, the last to
    restore it restores it.
    """

    _settled_apps = 0
    _previous: tuple[int, int, int] = gc.get_threshold()

    def __init__(self) -> None:
        self._settled = False

    def settle(self) -> None:
        """Collect start-up's garbage once, freeze what is left, collect the young less often."""
        if self._settled:
            return
        self._settled = True
        cls = SettledCollector
        cls._settled_apps += 1
        if cls._settled_apps == 1:
            gc.collect()
            gc.freeze()
            cls._previous = gc.get_threshold()
            _, middle, old = cls._previous
            gc.set_threshold(YOUNG_THRESHOLD, middle, old)

    def restore(self) -> None:
        """Undo ``settle`` (the app may stop in a process that goes on, as in tests)."""
        if not self._settled:
            return
        self._settled = False
        cls = SettledCollector
        cls._settled_apps -= 1
        if cls._settled_apps == 0:
            gc.set_threshold(*cls._previous)
            gc.unfreeze()
