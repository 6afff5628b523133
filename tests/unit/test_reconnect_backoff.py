"""The page's reconnect waits (web/src/backoff.ts), run in Node compiled by the page's esbuild."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"

# Compiles backoff.ts with the page's own esbuild, then prints what the tests check.
_SCRIPT = """
import { build } from "esbuild";
const out = await build({
  entryPoints: ["src/backoff.ts"], bundle: true, format: "esm", write: false, logLevel: "error",
});
const source = Buffer.from(out.outputFiles[0].text).toString("base64");
const backoff = await import(`data:text/javascript;base64,${source}`);
const { Backoff, FIRST_RETRY_MS, MAX_RETRY_MS } = backoff;

// With random() at its top the wait is the bound itself.
const top = () => 1;
const failing = new Backoff(top);
const bounds = Array.from({ length: 8 }, () => failing.next(false));
failing.reset();
const afterProgress = failing.next(false);

const mixed = new Backoff(top);
const drained = [mixed.next(false), mixed.next(false), mixed.next(true), mixed.next(false)];

// Real randomness at the cap: many pages failing at once.
const capped = new Backoff();
for (let i = 0; i < 5; i++) capped.next(false);
const waits = Array.from({ length: 4000 }, () => capped.next(false));

const seen = { FIRST_RETRY_MS, MAX_RETRY_MS, bounds, afterProgress, drained, waits };
console.log(JSON.stringify(seen));
"""


@pytest.fixture(scope="module")
def observed() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (WEB / "node_modules" / "esbuild").exists():
        # In CI the no-skip hook turns this into a failure.
        pytest.skip("needs node and web/node_modules: make web")
    result = subprocess.run(
        [node, "--input-type=module", "-e", _SCRIPT],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_the_bound_doubles_per_failure_up_to_the_cap(observed: dict[str, Any]) -> None:
    assert (observed["FIRST_RETRY_MS"], observed["MAX_RETRY_MS"]) == (250, 4000)
    assert observed["bounds"] == [250, 500, 1000, 2000, 4000, 4000, 4000, 4000]


def test_progress_starts_the_bound_over(observed: dict[str, Any]) -> None:
    assert observed["afterProgress"] == 250


def test_a_stream_the_server_ended_resumes_at_once_without_growing_the_bound(
    observed: dict[str, Any],
) -> None:
    assert observed["drained"] == [250, 500, 250, 1000]


def test_waits_are_spread_over_the_whole_bound(observed: dict[str, Any]) -> None:
    waits: list[float] = observed["waits"]
    assert all(0 <= wait < 4000 for wait in waits)
    # Uniform on [0, 4000): mean 2000 (its standard error here is about 18 ms),
    # a tenth below 400 ms, a tenth above 3600 ms. A fixed wait, or jitter on only
    # part of the bound, fails these by far; chance does not come near.
    assert 1800 < sum(waits) / len(waits) < 2200
    assert 0.05 < sum(wait < 400 for wait in waits) / len(waits) < 0.15
    assert 0.05 < sum(wait >= 3600 for wait in waits) / len(waits) < 0.15
    assert len(set(waits)) > 3900
