"""TCP keepalive options: each one the kernel takes, for any idle timeout the settings allow."""

from __future__ import annotations

import socket

import pytest

from server.app.keepalive import MAX_IDLE, keepalive_options


@pytest.mark.parametrize("idle_timeout", [1, 120, MAX_IDLE, MAX_IDLE + 1, 1_000_000])
def test_a_tcp_socket_takes_every_option(idle_timeout: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        for level, option, value in keepalive_options(idle_timeout):
            sock.setsockopt(level, option, value)
            assert sock.getsockopt(level, option) == value


def test_the_first_probe_waits_the_idle_timeout_up_to_linux_s_limit() -> None:
    def idle(timeout: int) -> int:
        return next(v for _, o, v in keepalive_options(timeout) if o == socket.TCP_KEEPIDLE)

    assert (idle(120), idle(MAX_IDLE + 1)) == (120, MAX_IDLE)
