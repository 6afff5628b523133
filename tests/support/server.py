"""Runs the real server in a subprocess on a socket the OS picked."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it returns true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` unless ``proc`` has exited, wait, and return its exit code.

    A process still running after STOP_TIMEOUT is killed, and the test fails.
    """
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else 0
    proc.send_signal(sig)
    try:
        return proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


class ServerProcess:
    """``library serve`` on an inherited listening socket, stopped by ``stop()``."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self._args = list(args)
        self._env = env or {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Port 0: the OS picks a free port; a restart can ask for the same one again.
        self._sock.bind(("127.0.0.1", port or 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        """Start and wait until the health check answers SERVING."""
        fd = self._sock.fileno()
        env = {**os.environ, "LIBRARY_LOG_LEVEL": "warning", **self._env}
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "serve",
                "--fd",
                str(fd),
                "--database",
                self.database_url,
                *self._args,
            ],
            pass_fds=(fd,),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        # The child owns the socket now; closing our copy lets a stop() really free the port.
        self._sock.close()
        wait_until(self._ready, READY_TIMEOUT, f"server on {self.url} (log: {self.log_path})")
        return self

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self._proc is not None
        return self._proc.pid

    def running(self) -> bool:
        """Whether the server process is still up."""
        return self._proc is not None and self._proc.poll() is None

    def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {self._proc.returncode}: {self.log_path.read_text()}"
            )
        request = urllib.request.Request(
            f"{self.url}/grpc.health.v1.Health/Check",
            data=b"{}",
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return bool(json.load(response).get("status") == "SERVING")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the server (SIGTERM: graceful; SIGKILL: a crash) and return its exit code."""
        return stop_process(self._proc, sig)

    def restart(self) -> ServerProcess:
        """Stop gracefully and start again on the same port and database."""
        self.stop()
        again = ServerProcess(
            self.database_url,
            self.log_path,
            args=self._args,
            env=self._env,
            port=self.port,
        )
        self.__dict__.update(again.__dict__)
        return self.start()
