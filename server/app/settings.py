"""The one typed settings object, read from ``LIBRARY_*`` variables and CLI flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

WORKER_SETTINGS_ENV = "LIBRARY_INTERNAL_SETTINGS_JSON"
"""Where server processes find the settings their launcher resolved."""

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class Settings(BaseSettings):
    """Everything the server can be told; CLI flags override environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIBRARY_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    fd: int | None = Field(None, description="serve on this already-bound socket instead")
    database_url: str = Field("library.db", description="a SQLite file path or a postgresql:// URL")
    workers: int = Field(1, ge=1)
    db_pool_size: int = Field(10, ge=1, description="PostgreSQL connections per worker process")
    log_level: LogLevel = "info"
    demo: bool = Field(False, description="seed demo books and print demo tokens")
    # Stored as an unsalted hash like every token, so it must be as hard to guess.
    admin_token: SecretStr | None = Field(
        None, min_length=32, description="ensure a librarian with this token"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    loan_days: int = Field(14, ge=1)
    event_retention: int = Field(100_000, ge=0, description="events kept for resuming; 0 keeps all")
    web_dir: Path | None = Field(None, description="the built web page; defaults to web/dist")
    http2: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    shutdown_timeout: int = Field(10, ge=0, description="seconds open calls get on SIGTERM")
    # WatchBooks at scale: per-process caps, refused with UNAVAILABLE past them.
    max_watchers: int = Field(20_000, ge=1, description="open WatchBooks streams per process")
    max_snapshots: int = Field(8, ge=1, description="concurrent since_revision=0 snapshots")
    watch_queue: int = Field(1_000, ge=1, description="events a watcher may fall behind")
    book_cache: int = Field(100_000, ge=0, description="books GetBook keeps per process; 0: off")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept ``LIBRARY_CORS_ORIGINS=https://a.example,https://b.example``."""
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        """Refuse contradictory options before anything touches the database."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_cert is not None and not self.http2:
            raise ValueError("TLS is served by the HTTP/2 server: add --http2")
        if self.http2 and self.fd is not None:
            raise ValueError("fd is for the HTTP/1.1 server; use --port with --http2")
        if self.http2 and self.workers != 1:
            raise ValueError("--http2 runs one worker; workers is for the HTTP/1.1 server")
        return self

    def for_workers(self) -> str:
        """These settings for WORKER_SETTINGS_ENV; secrets stay with the launcher."""
        return self.model_dump_json(exclude={"admin_token"})

    @classmethod
    def from_workers_env(cls) -> Settings:
        """The settings a launcher left in WORKER_SETTINGS_ENV."""
        return cls.model_validate_json(os.environ[WORKER_SETTINGS_ENV])
