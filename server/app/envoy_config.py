"""The Envoy inside pyvoy, configured as Envoy's edge-proxy guidance says, from Settings.

pyvoy 1.3 exposes no option for timeouts, HTTP/2 limits or the overload
manager, but its public ``PyvoyServer.get_envoy_config()`` builds the bootstrap
it starts Envoy with; ``HardenedPyvoyServer`` overrides it to add them:

- request headers within ``header_timeout`` and at most ``max_header_bytes``
  (431 past it); idle connections closed after ``idle_timeout``;
- a stream with no bytes either way for ``stream_idle_timeout`` is reset (a
  body that stops arriving gets 408), except WatchBooks: a live page's stream
  is quiet for as long as nobody writes, so its route has no idle timeout (the
  watcher cap bounds how many there are, and HTTP/2 PINGs every
  ``idle_timeout`` close connections whose peer is gone, as TCP keepalive
  does for HTTP/1.1 ones);
- HTTP/2: ``max_streams_per_connection`` concurrent streams, the stream and
  connection windows and the per-connection buffer of the ``http2_*`` settings
  (Envoy's edge guidance by default: 64 KiB, 1 MiB, 32 KiB);
- at most ``max_connections`` downstream connections (the overload manager
  closes new ones at once past it);
- rapid reset (CVE-2023-44487): Envoy handles at most
  ``http2_requests_per_io_cycle`` new requests per connection per I/O cycle,
  and closes a connection once half of at least ``http2_reset_streams`` of its
  streams were reset by the client within ``http2_reset_lifetime`` seconds of
  opening.

It also puts Envoy's admin interface on an address chosen here, so the
launcher can ask for a graceful drain without reaching into pyvoy's internals.
"""

from __future__ import annotations

import math
import socket
from typing import Any

from pyvoy import PyvoyServer

from server.app.keepalive import keepalive_options
from server.app.settings import Settings


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HardenedPyvoyServer(PyvoyServer):
    """pyvoy's server with Envoy bounded as Settings say, and a known admin address."""

    def __init__(self, settings: Settings, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings
        self.admin_address = f"127.0.0.1:{free_loopback_port()}"

    def get_envoy_config(self) -> dict[str, Any]:
        """pyvoy's bootstrap, hardened."""
        config = super().get_envoy_config()
        harden(config, self._settings)
        host, port = self.admin_address.rsplit(":", 1)
        config["admin"] = {
            "address": {"socket_address": {"address": host, "port_value": int(port)}}
        }
        return config


def harden(config: dict[str, Any], settings: Settings) -> None:
    """Add the limits of ``settings`` to an Envoy bootstrap made by pyvoy."""
    for listener in config["static_resources"]["listeners"]:
        listener["per_connection_buffer_limit_bytes"] = settings.http2_connection_buffer
        # Set on the listening socket; Linux gives accepted connections the same.
        listener["socket_options"] = [
            *listener.get("socket_options", []),
            *(
                {"level": level, "name": option, "int_value": value}
                for level, option, value in keepalive_options(settings.idle_timeout)
            ),
        ]
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                if network_filter["name"] == "envoy.filters.network.http_connection_manager":
                    _harden_http(network_filter["typed_config"], settings)
    config["overload_manager"] = {
        "resource_monitors": [
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                    "downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": settings.max_connections,
                },
            }
        ]
    }
    config["layered_runtime"] = {
        "layers": [
            {"name": "static", "static_layer": _rapid_reset_runtime(settings)},
            {"name": "admin", "admin_layer": {}},
        ]
    }


# The one long-lived stream that may go quiet for good.
WATCH_PATH = "/library.v1.LibraryService/WatchBooks"


def _harden_http(manager: dict[str, Any], settings: Settings) -> None:
    manager["request_headers_timeout"] = _duration(settings.header_timeout)
    manager["stream_idle_timeout"] = _duration(settings.stream_idle_timeout)
    for host in manager["route_config"]["virtual_hosts"]:
        # Envoy takes a stream's idle timeout from its route's action; pyvoy is the
        # terminal filter, so this route's cluster is never used (nor checked).
        watch_route = {
            "match": {"path": WATCH_PATH},
            "route": {"cluster_header": "x-library-unused", "idle_timeout": "0s"},
        }
        host["routes"] = [watch_route, *host.get("routes", [])]
    manager["max_request_headers_kb"] = math.ceil(settings.max_header_bytes / 1024)
    manager["common_http_protocol_options"] = {"idle_timeout": _duration(settings.idle_timeout)}
    manager["http2_protocol_options"] = {
        "connection_keepalive": {
            "interval": _duration(settings.idle_timeout),
            "timeout": _duration(min(settings.idle_timeout, 20)),
        },
        "max_concurrent_streams": settings.max_streams_per_connection,
        "initial_stream_window_size": settings.http2_stream_window,
        "initial_connection_window_size": settings.http2_connection_window,
    }


def _rapid_reset_runtime(settings: Settings) -> dict[str, int]:
    # Runtime keys of Envoy's rapid-reset defence (it has no bootstrap fields for them).
    return {
        "http.max_requests_per_io_cycle": settings.http2_requests_per_io_cycle,
        "overload.premature_reset_total_stream_count": settings.http2_reset_streams,
        "overload.premature_reset_min_stream_lifetime_seconds": settings.http2_reset_lifetime,
    }


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"
