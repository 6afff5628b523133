"""Real server processes for the tests: one base, the two ``library serve`` kinds, one factory.

``ManagedProcess`` owns what every child process shares: its output in a log file,
waiting with a deadline until it is ready (failing at once, with its log, if it
exits), and stopping it (a signal, a bounded wait, then SIGKILL and a failure).
``LibraryServer`` runs ``python -m server serve`` on a database; its two kinds,
``ServerProcess`` (uvicorn, HTTP/1.1) and ``Http2Server`` (``--http2``, pyvoy), state
only how they listen and how they are asked whether they serve. ``ServerFactory``
starts either kind with the tests' admin token and stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypedDict, TypeVar, Unpack

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# How much of a log a failure quotes: the end, where the reason is.
_LOG_TAIL = 4000
_LISTENING = re.compile(r"library serving HTTP/2 on (https?)://([\d.]+):(\d+)")


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it returns true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def health(url: str, context: ssl.SSLContext | None = None) -> str | None:
    """The status ``grpc.health.v1.Health/Check`` reports at ``url`` (Connect JSON), or None."""
    request = urllib.request.Request(
        f"{url}/grpc.health.v1.Health/Check",
        data=b"{}",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return str(json.load(response).get("status"))
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return None


def children(parent: int) -> list[int]:
    """The processes ``parent`` started (from /proc)."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{parent}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(parent: int) -> list[int]:
    """Every process below ``parent``, children before grandchildren."""
    found = children(parent)
    for child in list(found):
        found += descendants(child)
    return found


class ManagedProcess:
    """A child process writing to ``log_path``: started once, awaited, stopped by ``stop()``."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._own_group = False

    def _spawn(
        self, argv: Sequence[str], env: Mapping[str, str], *, own_group: bool = False, **popen: Any
    ) -> None:
        """Start ``argv`` with stdout and stderr appended to the log.

        ``own_group`` starts it in a new session, so that signals reach everything it
        runs (a shell and its server), as a terminal's Ctrl+C does.
        """
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=own_group,
                **popen,
            )
        self._own_group = own_group

    def log_text(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        """The process id."""
        assert self._proc is not None
        return self._proc.pid

    def running(self) -> bool:
        """Whether the process is still up."""
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(
        self, ready: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT
    ) -> None:
        """Wait until ``ready()``; fail at once if the process exits, quoting its log."""

        def alive_and_ready() -> bool:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"exited with {self._proc.returncode} before {what}:\n{self._tail()}"
                )
            return ready()

        try:
            wait_until(alive_and_ready, timeout, what)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; log {self.log_path}:\n{self._tail()}") from None

    def _tail(self) -> str:
        return self.log_text()[-_LOG_TAIL:]

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` (to the whole group, if it has its own) without waiting."""
        assert self._proc is not None
        if self._own_group:
            os.killpg(self._proc.pid, sig)
        else:
            self._proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit and return its exit code."""
        assert self._proc is not None
        return self._proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` unless it has exited, wait, and return its exit code.

        A process still running after STOP_TIMEOUT is killed, and the test fails.
        """
        if self._proc is None:
            return 0
        if self._proc.poll() is not None:
            return self._proc.returncode
        self.send_signal(sig)
        try:
            return self.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Its children first (uvicorn's workers), which would outlive it otherwise.
            for pid in descendants(self._proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.send_signal(signal.SIGKILL)
            self._proc.wait()
            raise


class ServerOptions(TypedDict, total=False):
    """What every kind of server takes besides its database and log."""

    args: Sequence[str]
    env: Mapping[str, str] | None


class LibraryServer(ManagedProcess, ABC):
    """``python -m server serve`` on ``database_url``; a kind says how it listens and answers."""

    LOG_LEVEL = "warning"

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(log_path)
        self.database_url = database_url
        self._args = list(args)
        self._env = dict(env or {})
        self.port = 0
        self.url = ""

    def start(self) -> Self:
        """Start and wait until the standard health check answers SERVING."""
        self._spawn(
            [
                sys.executable,
                "-m",
                "server",
                "serve",
                *self._listen_args(),
                "--database",
                self.database_url,
                *self._args,
            ],
            {**os.environ, "LIBRARY_LOG_LEVEL": self.LOG_LEVEL, **self._env},
            pass_fds=self._pass_fds(),
        )
        self._spawned()
        self.wait_ready(self._serving, f"SERVING from {self.url or 'the server'}")
        return self

    @abstractmethod
    def _listen_args(self) -> list[str]:
        """The command-line flags that say where to listen."""

    def _pass_fds(self) -> tuple[int, ...]:
        """File descriptors the server inherits."""
        return ()

    def _spawned(self) -> None:
        """Learn the address, once the process runs."""

    @abstractmethod
    def _serving(self) -> bool:
        """Whether the server answers its health check with SERVING."""


class ServerProcess(LibraryServer):
    """``library serve`` (uvicorn, HTTP/1.1) on an inherited socket on a port the OS picked."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        port: int | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(database_url, log_path, **options)
        self._listen(port or 0)

    def _listen(self, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Port 0: the OS picks a free port; a restart asks for the same one again.
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _listen_args(self) -> list[str]:
        return ["--fd", str(self._sock.fileno())]

    def _pass_fds(self) -> tuple[int, ...]:
        return (self._sock.fileno(),)

    def _spawned(self) -> None:
        # The child owns the socket now; closing our copy lets a stop() really free the port.
        self._sock.close()

    def _serving(self) -> bool:
        return health(self.url) == "SERVING"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """As ManagedProcess.stop; also frees the port if the process never took it."""
        self._sock.close()
        return super().stop(sig)

    def restart(self) -> ServerProcess:
        """Stop gracefully and start again on the same port and database."""
        self.stop()
        self._listen(self.port)
        return self.start()


class Http2Server(LibraryServer):
    """``library serve --http2 --port 0`` (pyvoy); the port is read from its log line."""

    # The HTTP/2 tests read the server's debug lines (a watch ending, a stream reset).
    LOG_LEVEL = "debug"

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        tls_root_cert: bytes | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(database_url, log_path, **options)
        self._tls_root_cert = tls_root_cert
        self.target = ""

    def _listen_args(self) -> list[str]:
        return ["--http2", "--port", "0"]

    def _spawned(self) -> None:
        self.wait_ready(self._listening, f"the listening line in {self.log_path}")

    def _listening(self) -> bool:
        found = _LISTENING.search(self.log_text())
        if found is None:
            return False
        scheme, host, port = found.groups()
        self.port = int(port)
        self.target = f"{host}:{port}"
        self.url = f"{scheme}://{self.target}"
        return True

    def _serving(self) -> bool:
        """SERVING over gRPC, the protocol only this kind speaks."""
        if self._tls_root_cert is None:
            channel = grpc.insecure_channel(self.target)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=self._tls_root_cert)
            channel = grpc.secure_channel(f"localhost:{self.port}", credentials)
        with channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
            except grpc.RpcError:
                return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


S = TypeVar("S", bound=LibraryServer)


class ServerFactory:
    """Starts servers of either kind, each on a fresh database and log; stops all it started."""

    def __init__(
        self,
        new_database: Callable[[], str],
        new_log: Callable[[str], Path],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._new_database = new_database
        self._new_log = new_log
        self._env = dict(env or {})
        self._made: list[LibraryServer] = []

    def make(
        self,
        kind: type[S],
        database_url: str | None = None,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> S:
        """A server of ``kind``, not started yet (the factory still stops it at the end)."""
        server = kind(
            database_url or self._new_database(),
            self._new_log(kind.__name__),
            args=args,
            env={**self._env, **(env or {})},
            **options,
        )
        self._made.append(server)
        return server

    def start(self, kind: type[S], database_url: str | None = None, **options: Any) -> S:
        """A server of ``kind``, started and SERVING; see ``make`` for the options."""
        return self.make(kind, database_url, **options).start()

    def child(self) -> ServerFactory:
        """A factory like this one whose servers its owner stops sooner (e.g. after one test)."""
        return ServerFactory(self._new_database, self._new_log, self._env)

    def stop_all(self) -> None:
        """Stop every server made here (those already stopped are left alone).

        One that will not stop fails the run, after the others have been stopped.
        """
        failures: list[BaseException] = []
        for server in self._made:
            try:
                server.stop()
            except Exception as e:
                failures.append(e)
        if failures:
            raise failures[0]
