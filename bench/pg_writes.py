"""PostgreSQL: does batching writes help when each takes the event-head row lock?

``.venv/bin/python bench/pg_writes.py`` (Debian's PostgreSQL server binaries;
about 3 minutes) starts a throwaway cluster with ``fsync = on`` and
``synchronous_commit = on`` and measures, in one run:

- the one-row commit floor: one connection, one INSERT per transaction;
- head-locked writes as the service did them before it batched: 32
  connections, each transaction an event taking its revision from the single
  ``event_head`` row;
- the same rows batched: 32 events per transaction, one head lock each;
- batched on one connection (as each process's writer is), the head locked
  first and each event in its own savepoint: each event moving the head row,
  against each numbered after the last and the head moved once per batch
  (what the writer does);
- the service itself: CreateBook from 32 connections, one uvicorn worker,
  then two;
- then (unless ``--writes-only``) ``bench/run.py --cases fanout`` with the
  library on this cluster: one CreateBook reaching 1,000 and 10,000
  WatchBooks streams, against the minimal connectrpc handler and bare ASGI
  in the same run (about 2 minutes).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale

SECONDS = 3.0
CONNECTIONS = 32
BATCH = 32
TOKEN = "lib_bench-admin-token-0123456789abcdefghijklmnop"
SCHEMA = """
CREATE TABLE event_head (revision BIGINT NOT NULL);
INSERT INTO event_head VALUES (0);
CREATE TABLE events (revision BIGINT PRIMARY KEY, book TEXT NOT NULL);
CREATE TABLE floor (id BIGSERIAL PRIMARY KEY, book TEXT NOT NULL);
"""
BOOK = "x" * 200


def pg_bin() -> Path:
    """Debian's newest PostgreSQL server binaries."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise SystemExit("needs Debian's postgresql server binaries")
    return found[-1].parent


async def rate(url: str, work: object, connections: int) -> float:
    """Transactions per second of ``work(conn)`` on ``connections`` connections in parallel."""
    deadline = time.perf_counter() + SECONDS
    done = 0

    async def loop(conn: asyncpg.Connection) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await work(conn)  # type: ignore[operator]
            done += 1

    conns = [await asyncpg.connect(url) for _ in range(connections)]
    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return done / elapsed


async def one_row(conn: asyncpg.Connection) -> None:
    """The floor: one row, one commit."""
    await conn.execute("INSERT INTO floor (book) VALUES ($1)", BOOK)


APPEND = (
    "WITH head AS (UPDATE event_head SET revision = revision + 1 RETURNING revision)"
    " INSERT INTO events SELECT revision, $1 FROM head"
)


async def head_locked(conn: asyncpg.Connection) -> None:
    """One event per transaction, its revision from the head row."""
    await conn.execute(APPEND, BOOK)


async def savepointed(conn: asyncpg.Connection, append: str, end: str) -> None:
    """``BATCH`` events as the writer commits them: the head locked first, a savepoint each."""
    await conn.execute("BEGIN; SELECT 1 FROM event_head FOR UPDATE; SAVEPOINT write")
    for n in range(BATCH):
        if n:
            await conn.execute("RELEASE SAVEPOINT write; SAVEPOINT write")
        await conn.execute(append, BOOK)
    await conn.execute(f"{end}COMMIT")


async def head_per_event(conn: asyncpg.Connection) -> None:
    """A batch whose events each move the head row."""
    await savepointed(conn, APPEND, "")


NEXT_REVISION = (
    "INSERT INTO events SELECT greatest((SELECT max(revision) FROM events),"
    " (SELECT revision FROM event_head)) + 1, $1"
)


async def head_per_batch(conn: asyncpg.Connection) -> None:
    """A batch whose events each take the next revision after the last; the head moves once."""
    await savepointed(
        conn, NEXT_REVISION, "UPDATE event_head SET revision = (SELECT max(revision) FROM events); "
    )


async def batched(conn: asyncpg.Connection) -> None:
    """``BATCH`` events in one transaction, one head lock for all."""
    async with conn.transaction():
        top = await conn.fetchval(
            "UPDATE event_head SET revision = revision + $1 RETURNING revision", BATCH
        )
        await conn.executemany(
            "INSERT INTO events VALUES ($1, $2)",
            [(top - BATCH + 1 + i, BOOK) for i in range(BATCH)],
        )


async def measure(url: str) -> tuple[str, float]:
    """Every raw case, as a markdown table, and the one-row floor."""
    conn = await asyncpg.connect(url)
    await conn.execute(SCHEMA)
    await conn.close()
    floor = await rate(url, one_row, 1)
    locked = await rate(url, head_locked, CONNECTIONS)
    rows_batched = await rate(url, batched, CONNECTIONS) * BATCH
    per_event = await rate(url, head_per_event, 1) * BATCH
    per_batch = await rate(url, head_per_batch, 1) * BATCH
    rows = "\n".join(
        [
            "| PostgreSQL, fsync on | rows/s | vs one-row floor |",
            "|---|---:|---:|",
            f"| one-row commit floor (1 connection) | {floor:,.0f} | 1.00x |",
            f"| one event per commit, head-locked, {CONNECTIONS} connections"
            f" | {locked:,.0f} | {locked / floor:.2f}x |",
            f"| {BATCH} events per commit, head-locked, {CONNECTIONS} connections"
            f" | {rows_batched:,.0f} | {rows_batched / floor:.2f}x |",
            f"| {BATCH} events per commit, head locked first, a savepoint and a head"
            f" update each, 1 connection | {per_event:,.0f} | {per_event / floor:.2f}x |",
            f"| the same, each event numbered after the last, one head update per commit"
            f" (as the writer does it), 1 connection"
            f" | {per_batch:,.0f} | {per_batch / floor:.2f}x |",
        ]
    )
    return rows, floor


async def service(workers: int, floor: float) -> str:
    """A row for CreateBook from 32 connections against the service."""
    host = "127.0.0.1"
    load = await scale.closed_loop(
        f"http://{host}:{PORT}",
        [lambda: scale.create_request(host, TOKEN)] * CONNECTIONS,
        SECONDS,
    )
    return (
        f"| the service: CreateBook, {CONNECTIONS} connections, {workers} worker(s)"
        f" | {load.calls_per_second:,.0f} | {load.calls_per_second / floor:.2f}x"
        f" (p99 {load.p99_ms:.0f} ms, {load.errors} errors) |"
    )


PORT = 18_990


def main() -> None:
    """Start a cluster, measure, stop it."""
    bin_dir = pg_bin()
    with tempfile.TemporaryDirectory(prefix="library-pg-bench-") as scratch:
        data = Path(scratch) / "data"
        run = [] if os.getuid() else ["runuser", "-u", "postgres", "--"]
        if run:
            os.chmod(scratch, 0o777)
        subprocess.run(
            [*run, bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        options = f"-k {scratch} -c listen_addresses='' -c fsync=on -c synchronous_commit=on"
        log = Path(scratch) / "log"
        subprocess.run(
            [*run, bin_dir / "pg_ctl", "-D", data, "-l", log, "-w", "-o", options, "start"],
            check=True,
            capture_output=True,
        )
        try:
            subprocess.run(
                [*run, bin_dir / "createdb", "-h", scratch, "-U", "postgres", "library"],
                check=True,
            )
            subprocess.run(
                [*run, bin_dir / "createdb", "-h", scratch, "-U", "postgres", "raw"], check=True
            )
            table, floor = uvloop.run(measure(f"postgresql://postgres@/raw?host={scratch}"))
            print(table)
            env = {
                **os.environ,
                "LIBRARY_DATABASE_URL": f"postgresql://postgres@/library?host={scratch}",
                "LIBRARY_ADMIN_TOKEN": TOKEN,
                "LIBRARY_CORS_ORIGINS": "https://page.example",
                "LIBRARY_LOG_LEVEL": "warning",
                "LIBRARY_DB_POOL_SIZE": str(CONNECTIONS),
            }
            # One worker, then two contending for the event head (each with its writer).
            for workers in (1, 2):
                server = subprocess.Popen(
                    [sys.executable, "-m", "server", "serve", "--port", str(PORT)],
                    env={**env, "LIBRARY_WORKERS": str(workers)},
                )
                try:
                    time.sleep(5)
                    print(uvloop.run(service(workers, floor)), flush=True)
                finally:
                    server.terminate()
                    server.wait(15)
            if "--writes-only" in sys.argv:
                return
            subprocess.run(
                [*run, bin_dir / "createdb", "-h", scratch, "-U", "postgres", "fanout"], check=True
            )
            # The fan-out cases again with the library on PostgreSQL (its wake-ups are
            # LISTEN/NOTIFY), against the same baselines in the same run.
            subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve().parent / "run.py"),
                    "--cases",
                    "fanout",
                    "--database",
                    f"postgresql://postgres@/fanout?host={scratch}",
                ],
                check=True,
            )
        finally:
            subprocess.run(
                [*run, bin_dir / "pg_ctl", "-D", data, "-m", "fast", "stop"],
                check=True,
                capture_output=True,
            )


if __name__ == "__main__":
    main()
