"""The one typed settings object, read from ``LIBRARY_*`` variables and CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    admin_token: SecretStr | None = Field(None, description="ensure a librarian with this token")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    loan_days: int = Field(14, ge=1)
    event_retention: int = Field(100_000, ge=0, description="events kept for resuming; 0 keeps all")
    web_dir: Path | None = Field(None, description="the built web page; defaults to web/dist")
    http2: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    shutdown_timeout: float = Field(10.0, ge=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept ``LIBRARY_CORS_ORIGINS=https://a.example,https://b.example``."""
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value
