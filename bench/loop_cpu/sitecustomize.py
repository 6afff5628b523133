"""A probe for ``bench/run.py --cases writes``: how much event-loop work each call waits behind.

With ``PYTHONPATH=bench/loop_cpu`` and ``LIBRARY_BENCH_LOOP_CPU=<directory>``, every
uvicorn server the bench starts records, per HTTP/1.1 request, the CPU time its
event-loop thread spent from parsing the request to sending the last byte of
the answer, and writes it to ``<directory>/calls-<pid>.txt`` when it exits.
Unlike wall-clock latency, this leaves out time the core spent on other
processes, so it still means something on a shared machine; ``summary.py``
splits the GetBooks into those alone and those beside writes.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path
from typing import Any

_OUT = os.environ.get("LIBRARY_BENCH_LOOP_CPU")

if _OUT:
    from uvicorn.protocols.http import httptools_impl as _http

    _calls: list[tuple[float, str, float, float]] = []
    _begin = _http.HttpToolsProtocol.on_message_begin
    _headers = _http.HttpToolsProtocol.on_headers_complete
    _send = _http.RequestResponseCycle.send

    def _on_message_begin(self: Any) -> None:
        self.bench_started = (time.thread_time(), time.perf_counter())
        _begin(self)

    def _on_headers_complete(self: Any) -> None:
        _headers(self)
        self.cycle.bench_started = self.bench_started

    async def _send_and_note(self: Any, message: Any) -> None:
        await _send(self, message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            cpu, wall = self.bench_started
            method = self.scope["path"].rsplit("/", 1)[-1]
            now = time.perf_counter()
            _calls.append((now, method, time.thread_time() - cpu, now - wall))

    def _write() -> None:
        lines = (f"{t:.6f} {m} {c * 1e6:.0f} {w * 1e6:.0f}\n" for t, m, c, w in _calls)
        Path(_OUT, f"calls-{os.getpid()}.txt").write_text("".join(lines))

    _http.HttpToolsProtocol.on_message_begin = _on_message_begin  # type: ignore[method-assign]
    _http.HttpToolsProtocol.on_headers_complete = _on_headers_complete  # type: ignore[method-assign]
    _http.RequestResponseCycle.send = _send_and_note  # type: ignore[method-assign]
    atexit.register(_write)
