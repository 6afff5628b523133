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
from tests.support.server import STOP_TIMEOUT, wait_until

NGINX = Path("/usr/sbin/nginx")
CALL_TIMEOUT = 30


class Nginx:
    """nginx in the foreground with ``site`` (a config for its ``http`` block) included.

    Its files live in a directory under /tmp that its workers (``nobody``, when
    started by root) can reach.
    """

    def __init__(self, site: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="library-nginx-"))
        self.dir.chmod(0o755)
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
        self._proc: subprocess.Popen[bytes] | None = None

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
        self._proc = subprocess.Popen(
            [str(NGINX), "-p", str(self.dir), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: self._listening(port), 10, f"nginx on port {port}")
        return self

    def _listening(self, port: int) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise AssertionError(f"nginx exited: {self.errors()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    def errors(self) -> str:
        """nginx's error log."""
        log = self.dir / "error.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        """Stop at once (SIGTERM to its process group) and remove its files."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(STOP_TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)


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
