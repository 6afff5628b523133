"""What telemetry costs GetBook: each setting against the service from before it, in one run.

Usage (from the repository root; needs ``wrk`` and git history)::

    .venv/bin/python bench/telemetry.py              # 3 interleaved rounds, ~2 min
    .venv/bin/python bench/telemetry.py --rounds 1   # quicker, noisier

Servers, each one uvicorn worker (httptools, uvloop) on a loopback port the
OS picked, all with ``LIBRARY_CORS_ORIGINS`` set as users run them:

- ``before telemetry``: the service at ``--before`` (default: the commit just
  before ``server/app/telemetry`` was added), exported from git and run with
  this virtualenv;
- ``off``: this service with telemetry configured off (no ``OTEL_*`` exporter,
  no metrics port, log level warning so no access log): no middleware or
  interceptor is installed;
- ``access log``: log level info, text lines to a file;
- ``metrics``: the Prometheus endpoint on (multiprocess mode);
- ``tracing 100%``: ``OTEL_TRACES_SAMPLER=always_on`` into an exporter that
  drops every span (``OTEL_TRACES_EXPORTER=discard``), so spans are made,
  batched and handed over, but nothing is sent;
- ``everything``: access log, metrics and tracing together.

``wrk`` POSTs a Connect unary GetBook (binary). The table gives req/s, p99 and
server CPU time per request, with ratios to ``before telemetry`` and to
``off`` (higher is faster); the targets are ``off`` >= 0.97 against ``before
telemetry`` and ``tracing 100%`` >= 0.80 against ``off``. Then
``bench/in_process.py`` gives GetBook's CPU time per call with tracing on and
off, driving the ASGI app in-process (no sockets, no load generator). On a
shared machine req/s swings with other load; CPU time per request moves less,
and least in-process. Nothing asserts a timing. Every process it starts, it
stops.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from run import (
    GET_BOOK,
    Result,
    Server,
    add_wrk_options,
    check,
    cpus,
    first_book_id,
    median,
    ready_to_load,
    request_body,
    run_wrk,
    serving,
    wrk_script,
)

ROOT = Path(__file__).resolve().parents[1]
IN_PROCESS = Path(__file__).resolve().with_name("in_process.py")
BEFORE = "before telemetry"
OFF = "off"
CORS = {"LIBRARY_CORS_ORIGINS": "https://site.example"}
QUIET = {"LIBRARY_LOG_LEVEL": "warning"}
LOGGED = {"LIBRARY_LOG_LEVEL": "info"}
METRICS = {"LIBRARY_METRICS_PORT": "0"}
TRACED = {"OTEL_TRACES_EXPORTER": "discard", "OTEL_TRACES_SAMPLER": "always_on"}
CASES: dict[str, dict[str, str]] = {
    OFF: QUIET,
    "access log": LOGGED,
    "metrics": {**QUIET, **METRICS},
    "tracing 100%": {**QUIET, **TRACED},
    "everything": {**LOGGED, **METRICS, **TRACED},
}
# Each target: the baseline it is measured against, and the least ratio (req/s and CPU).
TARGETS = {OFF: (BEFORE, 0.97), "tracing 100%": (OFF, 0.80)}
# Whatever the bench's own environment says about telemetry must not leak into a case.
_UNSET = ("OTEL_", "LIBRARY_METRICS_", "LIBRARY_ACCESS_LOG", "LIBRARY_LOG_", "PROMETHEUS_")


def default_before() -> str:
    """The commit before the one that added the telemetry package."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "-1", "--", "server/app/telemetry"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not added:
        raise RuntimeError("no commit adds server/app/telemetry; pass --before REF")
    return f"{added}~1"


def export(ref: str, into: Path) -> Path:
    """The ``server`` package at ``ref``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "archive", ref, "server"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def command(env: dict[str, str], database: Path) -> list[str]:
    """``python -m server serve`` on ``database`` with ``env`` (``env`` the program sets it)."""
    clean = [f"--unset={name}" for name in os.environ if name.startswith(_UNSET)]
    settings = [f"{name}={value}" for name, value in {**CORS, **env}.items()]
    serve = [sys.executable, "-m", "server", "serve", "--database", str(database)]
    return ["env", *clean, *settings, *serve]


def table(results: dict[str, Result]) -> str:
    """Markdown: req/s, p99, CPU per request, ratios to the service before telemetry and to off."""
    lines = [
        "| server | req/s | p99 ms | server CPU µs/req | vs before (req/s, CPU)"
        " | vs off (req/s, CPU) | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in results.items():
        verdict = ""
        if name in TARGETS:
            baseline, target = TARGETS[name]
            met = min(ratios(result, results[baseline])) >= target
            verdict = f">= {target:.2f} vs {baseline}: {'met' if met else 'MISSED'}"
        lines.append(
            f"| {name} | {result.requests_per_second:,.0f} | {result.p99_ms:.2f}"
            f" | {result.cpu_us_per_request:.1f} | {pair(result, results[BEFORE])}"
            f" | {pair(result, results[OFF])} | {verdict} |"
        )
    return "\n".join(lines)


def ratios(result: Result, baseline: Result) -> tuple[float, float]:
    """``result`` against ``baseline`` by req/s and by CPU per request (higher is faster)."""
    return (
        result.requests_per_second / baseline.requests_per_second,
        baseline.cpu_us_per_request / result.cpu_us_per_request,
    )


def pair(result: Result, baseline: Result) -> str:
    """Both ratios, as the table shows them."""
    by_rate, by_cpu = ratios(result, baseline)
    return f"{by_rate:.3f}x, {by_cpu:.3f}x"


def start(stack: ExitStack, work: Path, before: str, cpu: int | None) -> Sequence[Server]:
    """The service before telemetry and this one in every case, each on its own demo database."""
    servers = []
    old = export(before, Path(tempfile.mkdtemp(dir=work)))
    # The old code finds the built page here, not beside its exported copy.
    web = {"LIBRARY_WEB_DIR": str(ROOT / "web" / "dist"), "LIBRARY_DEMO": "true"}
    cases = {BEFORE: {**QUIET, **web}, **{name: {**env, **web} for name, env in CASES.items()}}
    for index, (name, env) in enumerate(cases.items()):
        database = work / f"library-{index}.db"
        argv = command(env, database)
        if name == BEFORE:
            # ``python -m`` puts the working directory first: the exported package wins.
            argv = ["sh", "-c", f'cd "{old}" && exec "$@"', "sh", *argv]
        log = work / f"server-{index}.log"
        servers.append(
            stack.enter_context(serving(name, argv, cpu, log, ready="/grpc.health.v1.Health/Check"))
        )
    return servers


def main() -> int:
    """Run every case, round by round, and print the table of medians."""
    parser = argparse.ArgumentParser(description="GetBook with each telemetry setting.")
    parser.add_argument("--before", help="git ref of the service without telemetry")
    add_wrk_options(parser)
    args = parser.parse_args()
    if not ready_to_load():
        return 2
    before = args.before or default_before()
    server_cpu, client_cpu = cpus(args.server_cpu, args.client_cpu)
    load_before = os.getloadavg()[0]
    rounds: dict[str, list[Result]] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="library-bench-")))
        servers = start(stack, work, before, server_cpu)
        book_id = first_book_id(servers[0])
        body = request_body(book_id, "binary")
        script = wrk_script(work, "binary", body)
        for server in servers:
            check(server, "binary", body, book_id)
        for round_number in range(1, args.rounds + 1):
            for server in servers:
                if round_number == 1 and args.warmup > 0:
                    run_wrk(server, script, args.warmup, args.connections, client_cpu)
                result = run_wrk(server, script, args.duration, args.connections, client_cpu)
                rounds.setdefault(server.name, []).append(result)
                print(
                    f"round {round_number}: {server.name:<18} {result.requests_per_second:>9,.0f}"
                    f" req/s  p99 {result.p99_ms:6.2f} ms  {result.cpu_us_per_request:5.1f}"
                    " CPU µs/req",
                    file=sys.stderr,
                )
    pinning = (
        f"server pinned to CPU {server_cpu}, wrk to CPU {client_cpu}"
        if server_cpu is not None
        else "no CPU pinning (needs taskset and two CPUs)"
    )
    print(table({name: median(results) for name, results in rounds.items()}))
    print()
    print(
        f"Connect unary GetBook (binary) {GET_BOOK} over HTTP/1.1, one uvicorn worker, CORS on;"
        f" 'before telemetry' is {before}; wrk 1 thread, {args.connections} connections,"
        f" {args.duration} s per case, median of {args.rounds} interleaved round(s); {pinning};"
        f" load average at start {load_before:.2f}."
    )
    print()
    # The steadier figure on a shared machine: CPU per call with no sockets or load generator.
    sys.stdout.flush()
    return subprocess.run([sys.executable, str(IN_PROCESS)], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
