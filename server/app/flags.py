"""``library serve``'s flags, one per Settings field, made from the field itself.

Listing them by hand beside the settings let most of them drift out of reach of
the command line; here a new field gets its flag, type, help and variable name
at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import click
from pydantic.fields import FieldInfo

from server.app.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

# Flags named otherwise than their field: the shorter name people type, and the
# singular of a repeatable flag.
_NAMES = {"database_url": "--database", "cors_origins": "--cors-origin"}
_METAVARS = {int: "INTEGER", float: "NUMBER", Path: "PATH"}
ENV_ONLY = {"admin_token": "a secret: on the command line any user could read it in ps"}
"""Settings given only by variable, and why."""


def variable_of(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"LIBRARY_{field.upper()}"


def flag_of(field: str) -> str | None:
    """The ``library serve`` flag that sets ``field``, or None for ENV_ONLY ones."""
    if field in ENV_ONLY:
        return None
    return _NAMES.get(field, "--" + field.replace("_", "-"))


def settings_options(command: F) -> F:
    """Add a flag for every Settings field to ``command``, in the fields' order."""
    for field, info in reversed(Settings.model_fields.items()):
        flag = flag_of(field)
        if flag is not None:
            command = _option(field, flag, info)(command)
    return command


def given(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The settings the command line gave (each left out stays with its variable or default)."""
    return {
        field: list(value) if isinstance(value, tuple) else value
        for field, value in flags.items()
        if value is not None and value != ()
    }


def _option(field: str, flag: str, info: FieldInfo) -> Callable[[F], F]:
    kind = info.annotation
    options: dict[str, Any] = {"default": None}
    declaration = flag
    if kind is bool:
        declaration = f"{flag}/--no-{flag[2:]}"
    elif get_origin(kind) is Literal:
        options["type"] = click.Choice(get_args(kind))
    elif get_origin(kind) is list:
        options["multiple"] = True
    else:
        # Values reach the settings as text, so a bad one is told as a bad variable is.
        options["metavar"] = _METAVARS.get(_unoptional(kind), "TEXT")
    help_text = info.description or ""
    if options.get("multiple"):
        help_text += " (repeatable)"
    return click.option(declaration, field, help=f"{help_text}  [{_where(field, info)}]", **options)


def _unoptional(kind: Any) -> Any:
    """``int`` for ``int | None``."""
    return next((arg for arg in get_args(kind) if arg is not type(None)), kind)


def _where(field: str, info: FieldInfo) -> str:
    default = info.get_default(call_default_factory=True)
    if isinstance(default, bool):
        shown = "on" if default else "off"
    elif default in (None, []):
        return f"env {variable_of(field)}"
    else:
        shown = str(default)
    return f"env {variable_of(field)}; default {shown}"
