"""Every settings log level means one standard-library logging level."""

from __future__ import annotations

import logging
from typing import get_args

from server.app.logs import python_level
from server.app.settings import LogLevel


def test_every_settings_level_has_a_logging_level() -> None:
    levels = [python_level(level) for level in get_args(LogLevel)]
    assert levels == sorted(levels, reverse=True), "levels must run from coarsest to finest"
    assert python_level("warning") == logging.WARNING
    assert python_level("trace") == logging.DEBUG
