"""Serves the built web page: no-cache HTML, long-cached hashed assets."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import PlainTextResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send


class _WebFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        if path.startswith("assets/"):
            # Asset names carry a content hash, so they never change.
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        else:
            response.headers["cache-control"] = "no-cache"
        return response


def web_app(directory: Path) -> ASGIApp:
    """The page in ``directory``, or a plain 404 that says how to build it."""
    if directory.is_dir():
        return _WebFiles(directory=directory, html=True)

    async def missing(scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(
            f"The web page is not built ({directory} is missing): run 'make serve' to build it.",
            status_code=404,
        )
        await response(scope, receive, send)

    return missing
