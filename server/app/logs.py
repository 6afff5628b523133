"""The process's standard-library logging, set from the settings' log level."""

from __future__ import annotations

import logging

from server.app.settings import LogLevel, Settings

_PYTHON_LEVELS: dict[LogLevel, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    # Python has nothing finer than DEBUG; "trace" means more only to Envoy and uvicorn.
    "trace": logging.DEBUG,
}


def python_level(level: LogLevel) -> int:
    """The ``logging`` level for a settings log level."""
    return _PYTHON_LEVELS[level]


def configure_logging(settings: Settings) -> None:
    """Log to stderr at the settings' level, one process-wide format."""
    logging.basicConfig(level=python_level(settings.log_level), format=logging.BASIC_FORMAT)


def log_drain_period(seconds: float) -> None:
    """Say, once a stop is asked for, that the server reports not ready before it stops."""
    logging.getLogger("library").info(
        "not ready for %ss (LIBRARY_DRAIN_SECONDS), then shutting down", seconds
    )
