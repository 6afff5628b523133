"""The access log's time field: UTC, milliseconds, right across second boundaries."""

from __future__ import annotations

import datetime

import pytest

from server.app.telemetry.access_log import timestamp


@pytest.mark.parametrize(
    "seconds",
    [0.0, 0.999, 1.0, 1_764_672_000.5, 1_764_672_000.999, 1_764_672_001.001, 1_764_671_999.0],
)
def test_matches_the_standard_library(seconds: float) -> None:
    expected = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    assert timestamp(seconds) == expected.strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{int(seconds * 1000) % 1000:03d}Z"
    )


def test_a_second_apart_differs_though_the_milliseconds_agree() -> None:
    assert timestamp(1_764_672_000.25) != timestamp(1_764_672_001.25)
