"""The ``library`` command: serve, migrate, and the librarian's token commands."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from shlex import quote
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from server.app import demo
from server.app.flags import given, settings_options
from server.app.logs import configure_logging
from server.app.settings import Settings
from server.app.startup import check_can_listen, describe_database, explain_settings, reason
from server.app.wiring import opened_library
from server.domain.errors import AlreadyExists, DomainError
from server.domain.library import Library
from server.domain.models import Role

log = logging.getLogger("library")

T = TypeVar("T")


def _settings(**flags: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:
        # Name the flags of the command being run, and the variables behind them.
        context = click.get_current_context()
        options = {
            p.name: p.opts[0] for p in context.command.params if p.name and p.opts[0][:2] == "--"
        }
        raise click.ClickException(explain_settings(e, options)) from None


def _on_library(settings: Settings, use: Callable[[Library], Awaitable[T]]) -> T:
    """Run ``use`` on the settings' database; a failure to open it ends in one line."""

    async def run() -> T:
        async with AsyncExitStack() as stack:
            try:
                library = await stack.enter_async_context(opened_library(settings))
            except Exception as e:
                log.debug("opening the database failed", exc_info=True)
                raise click.ClickException(
                    f"cannot open the database ({describe_database(settings.database_url)}):"
                    f" {reason(e)}  [--database / LIBRARY_DATABASE_URL]"
                ) from None
            try:
                return await use(library)
            except DomainError as e:
                raise click.ClickException(e.message) from None

    return asyncio.run(run())


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
@settings_options
def serve(**flags: Any) -> None:
    """Run the server until Ctrl+C (SIGINT) or SIGTERM.

    Each option is also the LIBRARY_* variable shown beside it (the option
    wins); LIBRARY_ADMIN_TOKEN is a variable only, being a secret.
    """
    settings = _settings(**given(flags))
    configure_logging(settings)
    if settings.fd is None:
        problem = check_can_listen(settings.host, settings.port)
        if problem:
            raise click.ClickException(problem)
    log.info("database: %s", describe_database(settings.database_url))
    _on_library(settings, lambda library: _prepare(settings, library))
    if settings.http2:
        from server.app.serve_http2 import run_http2

        run_http2(settings)
    else:
        from server.app.serve import run_uvicorn

        run_uvicorn(settings)


async def _prepare(settings: Settings, library: Library) -> None:
    """Apply the admin token and demo data once (migrated already), before any worker starts."""
    if settings.admin_token is not None:
        await library.put_member_token(
            "admin", Role.LIBRARIAN, settings.admin_token.get_secret_value()
        )
    if settings.demo:
        librarian, member = await demo.seed(library)
        click.echo(
            f"Demo data ready. Open http://{_display_host(settings.host)}:{settings.port}\n"
            f"  demo librarian token: {librarian}\n"
            f"  demo member token:    {member}\n"
            "These tokens change on every start. Stop the server with Ctrl+C."
        )


async def _nothing(library: Library) -> None:
    """Opening the database migrates it; that is all ``migrate`` does."""


def _display_host(host: str) -> str:
    return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host


@main.command("create-librarian")
@click.argument("name")
@_database_option
def create_librarian(name: str, database_url: str | None) -> None:
    """Create a librarian called NAME and print their token (shown only this once)."""

    async def create(library: Library) -> str:
        try:
            _, token = await library.create_member(name, Role.LIBRARIAN)
        except AlreadyExists as e:
            raise click.ClickException(
                f"{e.message}; to give them a new token: library reissue-token {quote(name)}"
            ) from None
        return token

    click.echo(_on_library(_settings(database_url=database_url), create))


@main.command("reissue-token")
@click.argument("name")
@_database_option
def reissue_token(name: str, database_url: str | None) -> None:
    """Give the member called NAME a new token and print it; the old one stops working."""

    async def reissue(library: Library) -> str:
        _, token = await library.reissue_token(name)
        return token

    click.echo(_on_library(_settings(database_url=database_url), reissue))


@main.command("revoke-token")
@click.argument("name")
@_database_option
def revoke_token(name: str, database_url: str | None) -> None:
    """Make the token of the member called NAME stop working (reissue-token gives a new one)."""
    _on_library(_settings(database_url=database_url), lambda library: library.revoke_token(name))
    click.echo(
        f"{name} can no longer sign in; to give them a new token:"
        f" library reissue-token {quote(name)}"
    )


@main.command()
@_database_option
def migrate(database_url: str | None) -> None:
    """Apply pending schema migrations and exit."""
    settings = _settings(database_url=database_url)
    # On stderr, like the server's own log line: stdout says only the outcome.
    click.echo(f"migrating {describe_database(settings.database_url)}", err=True)
    _on_library(settings, _nothing)
    click.echo("database is up to date")
