"""A throwaway PostgreSQL cluster for the test run, from Debian's server binaries."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

START_TIMEOUT_SECONDS = 60
# Every server a test session starts keeps its pool until the session ends.
MAX_CONNECTIONS = 1000


def find_bin_dir() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/<version>/bin`` holding initdb, or None."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    return Path(max(found, key=lambda p: int(Path(p).parts[-3]))).parent


class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a temp dir, reachable only by its unix socket."""

    def __init__(self, bin_dir: Path) -> None:
        self._bin = bin_dir
        # initdb refuses to run as root; the Debian package provides a 'postgres' user.
        self._as_user = "postgres" if os.geteuid() == 0 else None
        # Short, because a unix socket path is limited to about 100 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="library-pg-"))
        self._data = self.dir / "data"
        self._names = itertools.count()

    def start(self) -> PostgresCluster:
        """Create and start the cluster; fsync is off because nothing here must survive."""
        if self._as_user is not None:
            entry = pwd.getpwnam(self._as_user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self._data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server on the cluster's files (again), waiting until it accepts connections."""
        options = (
            f"-k {self.dir} -c listen_addresses='' -c max_connections={MAX_CONNECTIONS}"
            " -c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self._data), "-l", str(self.dir / "server.log"),
            "-w", "-t", str(START_TIMEOUT_SECONDS), "-o", options, "start",
        )  # fmt: skip

    def halt(self) -> None:
        """Stop the server at once, as a crash would, keeping its files; returns once it is gone.

        The postmaster ends every backend before it exits, and takes its socket with it.
        """
        self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Stop the cluster at once and delete its files."""
        if (self._data / "postmaster.pid").exists():
            self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str) -> str:
        """A ``postgresql://`` URL for ``database`` over the cluster's unix socket."""
        return f"postgresql://postgres@/{database}?host={self.dir}"

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"library_{next(self._names)}"
        self._run("createdb", "-h", str(self.dir), "-U", "postgres", name)
        return self.url(name)

    def postmaster_pid(self) -> int:
        """The process id of the cluster's postmaster, which accepts every new connection."""
        return int((self._data / "postmaster.pid").read_text().split()[0])

    def log(self) -> str:
        """The server's log, for failure messages."""
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, program: str, *args: str) -> None:
        extra: dict[str, Any] = {"user": self._as_user} if self._as_user else {}
        result = subprocess.run(
            [str(self._bin / program), *args],
            cwd=self.dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=START_TIMEOUT_SECONDS + 30,
            **extra,
        )
        if result.returncode != 0:
            output = result.stdout + result.stderr
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{output}\n{self.log()}")
