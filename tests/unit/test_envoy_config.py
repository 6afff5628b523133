"""The Envoy bootstrap carries the HTTP/2 limits the settings give, whatever they are."""

from __future__ import annotations

from typing import Any

from server.app.envoy_config import HardenedPyvoyServer
from server.app.serve_http2 import WORKER_APP
from server.app.settings import Settings


def _bootstrap(settings: Settings) -> dict[str, Any]:
    server = HardenedPyvoyServer(settings, WORKER_APP, port=0)
    config: dict[str, Any] = server.get_envoy_config()
    return config


def test_windows_buffer_timeouts_and_reset_thresholds_come_from_the_settings() -> None:
    settings = Settings(
        http2=True,
        http2_stream_window=131_072,
        http2_connection_window=4_194_304,
        http2_connection_buffer=65_536,
        http2_requests_per_io_cycle=3,
        http2_reset_streams=50,
        http2_reset_lifetime=2,
        stream_idle_timeout=42,
    )
    config = _bootstrap(settings)
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][-1]["typed_config"]
    assert listener["per_connection_buffer_limit_bytes"] == 65_536
    assert manager["http2_protocol_options"]["initial_stream_window_size"] == 131_072
    assert manager["http2_protocol_options"]["initial_connection_window_size"] == 4_194_304
    assert manager["stream_idle_timeout"] == "42s"
    assert config["layered_runtime"]["layers"][0]["static_layer"] == {
        "http.max_requests_per_io_cycle": 3,
        "overload.premature_reset_total_stream_count": 50,
        "overload.premature_reset_min_stream_lifetime_seconds": 2,
    }


def test_the_defaults_are_envoys_edge_guidance() -> None:
    config = _bootstrap(Settings(http2=True))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][-1]
    options = manager["typed_config"]["http2_protocol_options"]
    assert options["initial_stream_window_size"] == 65_536
    assert options["initial_connection_window_size"] == 1_048_576


def test_only_the_watch_route_has_no_stream_idle_timeout_and_dead_peers_are_pinged() -> None:
    config = _bootstrap(Settings(http2=True, idle_timeout=90))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][-1]
    (host,) = manager["typed_config"]["route_config"]["virtual_hosts"]
    assert [(r["match"], r["route"]["idle_timeout"]) for r in host["routes"]] == [
        ({"path": "/library.v1.LibraryService/WatchBooks"}, "0s")
    ]
    keepalive = manager["typed_config"]["http2_protocol_options"]["connection_keepalive"]
    assert keepalive == {"interval": "90s", "timeout": "20s"}
