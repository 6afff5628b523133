"""The ``library`` command: serve, create a librarian, migrate."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click
from pydantic import ValidationError

from server.app import demo
from server.app.settings import Settings
from server.app.wiring import opened_library
from server.domain.errors import DomainError
from server.domain.models import Role

log = logging.getLogger("library")


def _settings(**flags: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:
        raise click.UsageError(str(e)) from None


def _database_option(f: Any) -> Any:
    return click.option(
        "--database",
        "database_url",
        help="SQLite file or postgresql:// URL  [env LIBRARY_DATABASE_URL; default library.db]",
    )(f)


@click.group()
def main() -> None:
    """Library: a ConnectRPC service that lends books."""


@main.command()
@click.option("--host", help="interface to listen on  [env LIBRARY_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="TCP port  [env LIBRARY_PORT; default 8080]")
@click.option("--fd", type=int, help="serve on this inherited, bound socket  [env LIBRARY_FD]")
@_database_option
@click.option("--workers", type=int, help="worker processes  [env LIBRARY_WORKERS; default 1]")
@click.option("--log-level", help="critical|error|warning|info|debug  [env LIBRARY_LOG_LEVEL]")
@click.option("--demo/--no-demo", default=None, help="seed demo books and print demo tokens")
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="allow this page origin (repeatable)",
)
@click.option("--http2/--no-http2", default=None, help="serve HTTP/2 (gRPC, full duplex) instead")
@click.option("--tls-cert", help="certificate chain (PEM) for HTTP/2 over TLS")
@click.option("--tls-key", help="private key (PEM) for HTTP/2 over TLS")
def serve(**flags: Any) -> None:
    """Run the server until SIGINT or SIGTERM."""
    flags["cors_origins"] = list(flags["cors_origins"]) or None
    settings = _settings(**flags)
    logging.basicConfig(
        level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG"
    )
    asyncio.run(_prepare(settings))
    if settings.http2:
        from server.app.serve_http2 import run_http2

        run_http2(settings)
    else:
        from server.app.serve import run_uvicorn

        run_uvicorn(settings)


async def _prepare(settings: Settings) -> None:
    """Migrate, then apply the admin token and demo data once, before any worker starts."""
    async with opened_library(settings) as library:
        if settings.admin_token is not None:
            await library.put_member_token(
                "admin", Role.LIBRARIAN, settings.admin_token.get_secret_value()
            )
        if settings.demo:
            librarian, member = await demo.seed(library)
            click.echo(
                f"Demo data ready. Open http://{_display_host(settings.host)}:{settings.port}\n"
                f"  demo librarian token: {librarian}\n"
                f"  demo member token:    {member}"
            )


def _display_host(host: str) -> str:
    return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host


@main.command("create-librarian")
@click.argument("name")
@_database_option
def create_librarian(name: str, database_url: str | None) -> None:
    """Create a librarian called NAME and print their token (shown only this once)."""
    settings = _settings(database_url=database_url)

    async def create() -> str:
        async with opened_library(settings) as library:
            _, token = await library.create_member(name, Role.LIBRARIAN)
        return token

    try:
        token = asyncio.run(create())
    except DomainError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
    click.echo(token)


@main.command()
@_database_option
def migrate(database_url: str | None) -> None:
    """Apply pending schema migrations and exit."""
    settings = _settings(database_url=database_url)

    async def run() -> None:
        async with opened_library(settings):
            pass

    asyncio.run(run())
    click.echo("database is up to date")
