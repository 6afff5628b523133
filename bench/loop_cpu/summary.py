"""Percentiles of what ``sitecustomize.py`` recorded: GetBook alone, GetBook beside writes, writes.

Usage: ``python bench/loop_cpu/summary.py <directory>`` (the library's file is the largest).
"""

from __future__ import annotations

import bisect
import sys
from pathlib import Path

# A GetBook within this many seconds of a write's answer ran beside the writes.
_BESIDE = 0.05


def quantile(values: list[float], fraction: float) -> float:
    """The value ``fraction`` of the way up the sorted ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def main(directory: str) -> None:
    """Print one line per group: count, loop-CPU p50/p90/p99, wall-clock p50/p99 (µs)."""
    largest = max(Path(directory).glob("calls-*.txt"), key=lambda p: p.stat().st_size)
    rows = [line.split() for line in largest.read_text().splitlines()]
    calls = [(float(t), m, float(c), float(w)) for t, m, c, w in rows]
    writes = sorted(t for t, m, _, _ in calls if m != "GetBook")

    def beside(at: float) -> bool:
        i = bisect.bisect_left(writes, at - _BESIDE)
        return i < len(writes) and writes[i] <= at + _BESIDE

    groups: dict[str, list[tuple[float, float]]] = {"GetBook alone": [], "GetBook beside": []}
    groups["writes"] = []
    for at, method, cpu, wall in calls:
        if method != "GetBook":
            groups["writes"].append((cpu, wall))
        else:
            groups["GetBook beside" if beside(at) else "GetBook alone"].append((cpu, wall))
    for name, values in groups.items():
        cpu = [c for c, _ in values]
        wall = [w for _, w in values]
        print(
            f"{name:15} n={len(values):6}  loop CPU µs p50 {quantile(cpu, 0.5):6.0f}"
            f" p90 {quantile(cpu, 0.9):6.0f} p99 {quantile(cpu, 0.99):6.0f}"
            f" | wall µs p50 {quantile(wall, 0.5):6.0f} p99 {quantile(wall, 0.99):6.0f}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
