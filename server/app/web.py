"""Serves the built web page: no-cache HTML, long-cached hashed assets, gzip for text."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

# Fixed here rather than taken from the host's mimetypes database, which on
# some systems maps .js to text/plain and so stops module scripts loading.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
IMMUTABLE = "public, max-age=31536000, immutable"


class WebFiles(StaticFiles):
    """Static files with explicit content types and cache headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file at ``path`` (``index.html`` for a directory), with headers set.

        Names starting with a dot (``.env``, ``.git/``, editors' swap files) are
        never part of the build, so they are not found, whatever the directory holds.
        """
        if any(part.startswith(".") for part in PurePosixPath(path).parts if part != "."):
            return PlainTextResponse("Not Found", status_code=404)
        response = await super().get_response(path, scope)
        if response.status_code >= 400:
            return response
        suffix = PurePosixPath(path).suffix or ".html"  # "" and "." are the index page
        if suffix in CONTENT_TYPES:
            response.headers["content-type"] = CONTENT_TYPES[suffix]
        # Asset names carry a content hash, so a name never changes its content;
        # the HTML names the current assets, so it must be revalidated each time.
        response.headers["cache-control"] = IMMUTABLE if path.startswith("assets/") else "no-cache"
        return response


def web_app(directory: Path) -> ASGIApp:
    """The page in ``directory``, or a plain 404 that says how to build it."""
    if directory.is_dir():
        return GZipMiddleware(WebFiles(directory=directory, html=True), minimum_size=1024)

    async def missing(scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(
            f"The web page is not built ({directory} is missing): "
            "run 'make serve', or 'npm ci && npm run build' in web/.",
            status_code=404,
        )
        await response(scope, receive, send)

    return missing
