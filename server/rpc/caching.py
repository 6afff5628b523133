"""What HTTP caches may do with the answers to Connect GET requests.

The catalogue changes live (WatchBooks), so a cached public read may be at
most a second old: enough for a shared cache to absorb a burst of identical
reads, short enough that a list is never staler than a watcher's wake-up.
Answers that depend on the caller are never stored. POST answers are not
cached by HTTP caches anyway, and errors carry no caching header.
"""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

PUBLIC_READ = "public, max-age=1"
"""For reads anyone may make (GetBook, ListBooks): the same answer for every caller."""
CALLER_READ = "private, no-store"
"""For reads about the caller (WhoAmI, ListLoans)."""


def allow_caching(ctx: RequestContext[Any, Any], policy: str) -> None:
    """Send ``policy`` as Cache-Control if this call came as a GET; call it on success only."""
    if ctx.http_method == "GET":
        ctx.response_headers["cache-control"] = policy
