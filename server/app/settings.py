"""The one typed settings object, read from ``LIBRARY_*`` variables and CLI flags."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

WORKER_SETTINGS_ENV = "LIBRARY_INTERNAL_SETTINGS_JSON"
"""Where server processes find the settings their launcher resolved."""

# An origin is scheme://host[:port]: no path, no trailing slash, no wildcard.
_ORIGIN = re.compile(r"https?://[^/\s*,]+")

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class Settings(BaseSettings):
    """Everything the server can be told; CLI flags override environment variables.

    Each field is a ``LIBRARY_*`` variable and a ``library serve`` flag
    (``server/app/flags.py``); its description is the flag's help.
    """

    model_config = SettingsConfigDict(env_prefix="LIBRARY_", frozen=True)

    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8080, ge=0, le=65535, description="TCP port")
    fd: int | None = Field(None, description="serve on this inherited, bound socket instead")
    database_url: str = Field("library.db", description="a SQLite file path or a postgresql:// URL")
    workers: int = Field(1, ge=1, description="worker processes (HTTP/1.1)")
    db_pool_size: int = Field(10, ge=1, description="PostgreSQL read connections per worker")
    log_level: LogLevel = Field("info", description="how much to log")
    demo: bool = Field(False, description="seed demo books and print demo tokens")
    # Stored as an unsalted hash like every token, so it must be as hard to guess.
    admin_token: SecretStr | None = Field(
        None, min_length=32, description="ensure a librarian with this token"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="page origins allowed to call the API"
    )
    loan_days: int = Field(14, ge=1, description="loan period in days")
    event_retention: int = Field(100_000, ge=0, description="events kept for resuming; 0 keeps all")
    web_dir: Path | None = Field(None, description="the built web page; defaults to web/dist")
    http2: bool = Field(False, description="serve HTTP/2 (gRPC, full duplex) instead")
    tls_cert: Path | None = Field(None, description="certificate chain (PEM) for HTTP/2 over TLS")
    tls_key: Path | None = Field(None, description="private key (PEM) for HTTP/2 over TLS")
    shutdown_timeout: int = Field(10, ge=0, description="seconds open calls get on SIGTERM")
    # Hostile clients: bounds on every request and connection (README "Limits").
    max_json_depth: int = Field(64, ge=2, le=1000, description="deepest JSON nesting accepted")
    max_header_bytes: int = Field(
        65536, ge=4096, le=1 << 20, description="request line and headers, in bytes"
    )
    header_timeout: float = Field(10, gt=0, description="seconds to receive a request's headers")
    idle_timeout: int = Field(120, ge=1, description="seconds an idle connection stays open")
    max_connections: int = Field(1000, ge=1, description="open connections; more are refused")
    max_streams_per_connection: int = Field(
        100, ge=1, description="concurrent HTTP/2 streams per connection"
    )
    max_import_failures: int = Field(
        100, ge=0, description="failures an ImportBooks reply lists (all are counted)"
    )
    # Telemetry: the Prometheus endpoint (off without a port) and the access log.
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve Prometheus /metrics on this port"
    )
    metrics_host: str = Field("127.0.0.1", description="the address /metrics listens on")
    access_log: bool = Field(True, description="one line per call, at log level info")
    log_format: Literal["text", "json"] = Field("text", description="access lines as text or JSON")
    # WatchBooks at scale: per-process caps, refused with UNAVAILABLE past them.
    max_watchers: int = Field(20_000, ge=1, description="open WatchBooks streams per process")
    max_snapshots: int = Field(8, ge=1, description="concurrent since_revision=0 snapshots")
    watch_queue: int = Field(1_000, ge=1, description="events a watcher may fall behind")
    book_cache: int = Field(100_000, ge=0, description="books GetBook keeps per process; 0: off")
    max_queued_writes: int = Field(
        10_000, ge=1, description="writes waiting for the process's writer; more: UNAVAILABLE"
    )
    # Hostile clients, continued: error-message bounds, slow bodies, Envoy's HTTP/2 defences.
    max_error_message: int = Field(
        300, ge=120, le=1000, description="characters an error message may have"
    )
    error_excerpt: int = Field(
        40, ge=8, le=200, description="characters of client input an error message quotes"
    )
    body_timeout: float = Field(
        60, gt=0, description="HTTP/1.1: seconds between two reads of a request body"
    )
    stream_idle_timeout: int = Field(
        300, ge=1, description="--http2: seconds a stream may pass with no bytes either way"
    )
    http2_stream_window: int = Field(
        65_536, ge=65_535, le=(1 << 31) - 1, description="--http2: initial stream window, bytes"
    )
    http2_connection_window: int = Field(
        1 << 20, ge=65_535, le=(1 << 31) - 1, description="--http2: connection window, bytes"
    )
    http2_connection_buffer: int = Field(
        32_768, ge=1024, le=1 << 24, description="--http2: bytes Envoy buffers per connection"
    )
    http2_requests_per_io_cycle: int = Field(
        1, ge=1, le=1000, description="--http2: new requests per connection per I/O cycle"
    )
    http2_reset_streams: int = Field(
        200, ge=1, description="--http2: streams before the premature-reset check applies"
    )
    http2_reset_lifetime: int = Field(
        1, ge=1, le=3600, description="--http2: seconds within which a reset is premature"
    )
    # Shutdown: how long /readyz says "draining" (calls still served) before the graceful stop.
    drain_seconds: float = Field(
        0, ge=0, le=3600, description="seconds not ready, still serving, after SIGTERM"
    )
    # Auth: how long a token's lookup is trusted (bounds how late a revoke-token takes effect).
    token_cache_seconds: float = Field(
        1.0, ge=0, le=60, description="seconds a token lookup is trusted; 0: every call asks"
    )
    # Reads ahead of writes: write calls let in per turn of the event loop, at once, waiting.
    writes_per_turn: int = Field(
        2, ge=1, description="write calls let in per turn of the event loop, per process"
    )
    max_writes_in_progress: int = Field(
        64, ge=1, description="write calls handled at once per process; more wait their turn"
    )
    max_waiting_writes: int = Field(
        1_000, ge=0, description="write calls waiting for a turn per process; more: UNAVAILABLE"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept ``LIBRARY_CORS_ORIGINS=https://a.example,https://b.example``."""
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        """Refuse a wildcard, and origins a browser would never send (they could never match)."""
        for origin in origins:
            if origin == "*":
                raise ValueError(
                    "'*' is not allowed: the API takes tokens, so list each page origin"
                    " (e.g. https://site.example)"
                )
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port] with http or"
                    " https and no path, e.g. https://site.example"
                )
        return origins

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        """Refuse contradictory options before anything touches the database."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "--tls-cert and --tls-key (LIBRARY_TLS_CERT, LIBRARY_TLS_KEY) go together"
            )
        if self.tls_cert is not None and not self.http2:
            raise ValueError("TLS is served by the HTTP/2 server: add --http2 (LIBRARY_HTTP2=1)")
        if self.http2 and self.fd is not None:
            raise ValueError(
                "--fd (LIBRARY_FD) is for the HTTP/1.1 server; use --port with --http2"
            )
        if self.http2 and self.workers != 1:
            raise ValueError(
                "--http2 runs one worker; --workers (LIBRARY_WORKERS) is for the HTTP/1.1 server"
            )
        if 2 * self.error_excerpt > self.max_error_message:
            raise ValueError(
                "LIBRARY_ERROR_EXCERPT may be at most half of LIBRARY_MAX_ERROR_MESSAGE,"
                " so that a message has room to say what is wrong"
            )
        for flag, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if path is not None and not os.access(path, os.R_OK):
                env = "LIBRARY_" + flag[2:].replace("-", "_").upper()
                raise ValueError(f"{flag} / {env}: cannot read {str(path)!r}")
        return self

    def for_workers(self) -> str:
        """These settings for WORKER_SETTINGS_ENV; secrets stay with the launcher."""
        return self.model_dump_json(exclude={"admin_token"})

    @classmethod
    def from_workers_env(cls) -> Settings:
        """The settings a launcher left in WORKER_SETTINGS_ENV."""
        return cls.model_validate_json(os.environ[WORKER_SETTINGS_ENV])
