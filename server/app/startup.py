"""Start-up checks, each failure told in one line that names the setting to change.

A person starting the server should read what is wrong and which variable or
flag fixes it, not a traceback; and never see a secret echoed back.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import ValidationError

# pydantic's wording speaks of "items" and "input"; these say what to write instead.
_MESSAGES: dict[str, str] = {
    "too_short": "must be at least {min_length} characters long",
    "string_too_short": "must be at least {min_length} characters long",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "bool_parsing": "must be true or false (1 or 0)",
    "literal_error": "must be one of {expected}",
}


def explain_settings(error: ValidationError, flags: Mapping[str, str]) -> str:
    """One line per problem in ``error``, naming the flag and variable; no input values.

    ``flags`` maps a settings field to its command-line flag, where it has one.
    """
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        context: dict[str, Any] = problem.get("ctx", {})
        if problem["type"] == "value_error":
            message = str(context["error"])
        else:
            message = _MESSAGES.get(problem["type"], problem["msg"]).format(**context)
        if problem["loc"]:
            field = str(problem["loc"][0])
            variable = f"LIBRARY_{field.upper()}"
            name = f"{flags[field]} / {variable}" if field in flags else variable
            message = f"{name}: {message}"
        lines.append(message)
    return "\n".join(lines)


def check_can_listen(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port``, or None if it can.

    Tried here because the servers' own reports of it are buried in long logs;
    the port is released at once (SO_REUSEADDR, as the servers bind it too).
    """
    if port == 0:
        return None
    # The address family the servers choose too: IPv6 only for an IPv6 address.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return f"--host / LIBRARY_HOST: cannot resolve {host!r}: {e.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return (
                    f"--port / LIBRARY_PORT: port {port} on {host} is in use by another"
                    " program; stop it or choose another port"
                )
            if e.errno == errno.EACCES:
                return f"--port / LIBRARY_PORT: port {port} needs root; choose one above 1023"
            if e.errno == errno.EADDRNOTAVAIL:
                return f"--host / LIBRARY_HOST: {host} is not an address of this machine"
            return f"cannot listen on {host}:{port}: {e.strerror}"
    return None


_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def describe_database(url: str) -> str:
    """The database ``url`` names, fit for a log line: absolute path, password hidden."""
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        if parts.password is not None:
            user, _, host = parts.netloc.rpartition("@")
            parts = parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}")
        # libpq and asyncpg also take passwords as query parameters.
        query = [
            (name, "***" if name in _SECRET_PARAMETERS else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="/*"))
        return f"PostgreSQL {urlunsplit(parts)}"
    path = Path(url.removeprefix("sqlite://"))
    state = "" if path.exists() else " (new)"
    return f"SQLite file {os.path.abspath(path)}{state}"


def reason(error: BaseException) -> str:
    """What went wrong at the root of ``error``'s chain, in its own words."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error) or type(error).__name__
