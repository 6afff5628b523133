"""Runs ``library serve --http2`` in a subprocess on a port the OS picked."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.server import READY_TIMEOUT, STOP_TIMEOUT, stop_process, wait_until

_LISTENING = re.compile(r"library serving HTTP/2 on (https?)://([\d.]+):(\d+)")


class Http2Server:
    """``library serve --http2 --port 0``; the port is read from its log line."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self._args = list(args)
        self._env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""
        self.target = ""

    def start(self, *, tls_root_cert: bytes | None = None) -> Http2Server:
        """Start and wait until the standard health check answers SERVING over gRPC."""
        env = {**os.environ, "LIBRARY_LOG_LEVEL": "debug", **self._env}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "server",
                    "serve",
                    "--http2",
                    "--port",
                    "0",
                    "--database",
                    self.database_url,
                    *self._args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_until(self._listening, READY_TIMEOUT, f"the listening line in {self.log_path}")
        wait_until(lambda: self._serving(tls_root_cert), READY_TIMEOUT, f"SERVING from {self.url}")
        return self

    def _listening(self) -> bool:
        self._check_alive()
        found = _LISTENING.search(self.log_text())
        if found is None:
            return False
        scheme, host, port = found.groups()
        self.port = int(port)
        self.target = f"{host}:{port}"
        self.url = f"{scheme}://{self.target}"
        return True

    def _serving(self, tls_root_cert: bytes | None) -> bool:
        self._check_alive()
        if tls_root_cert is None:
            channel = grpc.insecure_channel(self.target)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_root_cert)
            channel = grpc.secure_channel(f"localhost:{self.port}", credentials)
        with channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
            except grpc.RpcError:
                return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def _check_alive(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"server exited with {self._proc.returncode}: {self.log_text()}")

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        """The launcher's process id."""
        assert self._proc is not None
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the server process is still up."""
        return self._proc is not None and self._proc.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send a signal without waiting (e.g. SIGTERM to watch the drain)."""
        assert self._proc is not None
        self._proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the server to exit and return its exit code."""
        assert self._proc is not None
        return self._proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the server (SIGTERM: graceful) and return its exit code."""
        return stop_process(self._proc, sig)
