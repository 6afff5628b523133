"""Debian's nginx running the README's load-balancer config, and ``buf curl`` through it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.readme.conftest import REPO
from tests.support.buf import BUF
from tests.support.server import STOP_TIMEOUT, ManagedProcess

NGINX = Path("/usr/sbin/nginx")
CALL_TIMEOUT = 30


class Nginx(ManagedProcess):
    """nginx in the foreground with ``site`` (a config for its ``http`` block) included.

    Its files live in a directory under /tmp that its workers (``nobody``, when
    started by root) can reach.
    """

    def __init__(self, site: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="library-nginx-"))
        self.dir.chmod(0o755)
        # Its stderr and its error_log share one file: what a failure quotes.
        super().__init__(self.dir / "error.log")
        temp = self.dir / "temp"
        temp.mkdir()
        temp.chmod(0o777)
        (self.dir / "site.conf").write_text(site)
        temps = "\n".join(
            f"  {kind}_temp_path {temp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(
            f"daemon off;\nworker_processes 1;\npid {self.dir / 'nginx.pid'};\n"
            f"error_log {self.dir / 'error.log'} warn;\nevents {{ worker_connections 512; }}\n"
            f"http {{\n  access_log off;\n{temps}\n  include {self.dir / 'site.conf'};\n}}\n"
        )

    def check(self) -> str:
        """``nginx -t``: what it says about the config (it fails on a bad one)."""
        result = subprocess.run(
            [str(NGINX), "-t", "-p", str(self.dir), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stderr

    def start(self, port: int) -> Nginx:
        """Start, and wait until it listens on ``port``."""
        self._spawn(
            [str(NGINX), "-p", str(self.dir), "-c", str(self.conf)], os.environ, own_group=True
        )
        self.wait_ready(lambda: _listening(port), f"nginx on port {port}", 10)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop at once (SIGTERM to its process group) and remove its files."""
        try:
            return super().stop(sig)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _buf_curl(cacert: Path) -> list[str]:
    return [str(BUF), "curl", "--schema", str(REPO / "proto"), "--cacert", str(cacert)]


def buf_curl(
    url: str,
    *args: str,
    cacert: Path,
    stdin: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """``buf curl --schema proto`` through TLS with ``cacert``; what it printed."""
    extra = [f"-H={name}: {value}" for name, value in (headers or {}).items()]
    result = subprocess.run(
        [*_buf_curl(cacert), *extra, *args, url],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class Stream:
    """A ``buf curl`` server stream left running; its output so far is ``text``."""

    def __init__(self, url: str, request: str, *, cacert: Path, extra: Sequence[str] = ()) -> None:
        self._proc = subprocess.Popen(
            [*_buf_curl(cacert), *extra, "-d", request, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._chunks: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._chunks.append(line)

    @property
    def text(self) -> str:
        """What the stream printed so far."""
        return "".join(self._chunks)

    def close(self) -> None:
        """Stop the client."""
        self._proc.kill()
        self._proc.wait()
        self._reader.join(STOP_TIMEOUT)
