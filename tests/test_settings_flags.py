"""Every setting is a flag and a ``LIBRARY_*`` variable meaning the same; the README lists each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from server.app.cli import serve
from server.app.flags import ENV_ONLY, flag_of, given, variable_of
from server.app.settings import Settings
from tests.test_cli import library, one_line_failure

README = Path(__file__).resolve().parents[1] / "README.md"
# A row of the Configuration table: its variable and its flag ("\N{EN DASH}": none).
_ROW = re.compile(r"^\| `(LIBRARY_[A-Z0-9_]+)` \| (?:`(--[a-z0-9-]+)`[^|]*|\N{EN DASH}) \|", re.M)


def sample(field: str, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """A valid value for ``field`` other than its default, with the settings it needs beside it."""
    pem = tmp_path / "x.pem"
    pem.write_text("not checked before the server starts")
    special: dict[str, tuple[Any, dict[str, Any]]] = {
        "admin_token": ("t" * 40, {}),
        "host": ("0.0.0.0", {}),
        "fd": (3, {}),
        "database_url": ("postgresql://library@db.example/library", {}),
        "log_level": ("debug", {}),
        "log_format": ("json", {}),
        "cors_origins": (["https://a.example", "https://b.example:8443"], {}),
        "web_dir": (tmp_path, {}),
        "metrics_port": (9100, {}),
        "metrics_host": ("0.0.0.0", {}),
        "tls_cert": (pem, {"tls_key": pem, "http2": True}),
        "tls_key": (pem, {"tls_cert": pem, "http2": True}),
    }
    if field in special:
        return special[field]
    default = Settings.model_fields[field].default
    if isinstance(default, bool):
        return not default, {}
    if isinstance(default, int | float):
        return default + 1, {}
    raise AssertionError(f"no sample value for {field}: add one")


def plain(value: Any) -> Any:
    """A secret's own value; anything else as it is."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def as_text(value: Any) -> str:
    """``value`` written as its variable takes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(value) if isinstance(value, list) else str(value)


def as_args(field: str, value: Any) -> list[str]:
    """``value`` written as ``field``'s flag takes it."""
    flag = flag_of(field)
    assert flag is not None
    if isinstance(value, bool):
        return [flag if value else f"--no-{flag[2:]}"]
    if isinstance(value, list):
        return [arg for item in value for arg in (flag, item)]
    return [flag, str(value)]


def from_flags(args: list[str]) -> Settings:
    """The settings ``library serve`` makes of ``args``, parsed by the command itself."""
    context = serve.make_context("serve", args)
    return Settings(**given(context.params))


@pytest.fixture
def no_library_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with no LIBRARY_* variable, whatever the test run has."""
    for field in Settings.model_fields:
        monkeypatch.delenv(variable_of(field), raising=False)
    return monkeypatch


@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_a_flag_and_a_variable_set_the_same(
    field: str, tmp_path: Path, no_library_env: pytest.MonkeyPatch
) -> None:
    value, beside = sample(field, tmp_path)
    assert Settings.model_fields[field].get_default(call_default_factory=True) != value
    for name, other in beside.items():
        no_library_env.setenv(variable_of(name), as_text(other))
    no_library_env.setenv(variable_of(field), as_text(value))
    by_variable = plain(getattr(Settings(), field))
    assert by_variable == value
    for name in [field, *beside]:
        no_library_env.delenv(variable_of(name))
    if field in ENV_ONLY:
        assert flag_of(field) is None
        return
    args = [arg for name, other in beside.items() for arg in as_args(name, other)]
    by_flag = plain(getattr(from_flags([*args, *as_args(field, value)]), field))
    assert by_flag == by_variable


def test_a_flag_wins_over_its_variable(no_library_env: pytest.MonkeyPatch) -> None:
    no_library_env.setenv("LIBRARY_MAX_WAITING_WRITES", "5")
    assert from_flags(["--max-waiting-writes", "7"]).max_waiting_writes == 7
    assert from_flags([]).max_waiting_writes == 5


def test_a_bad_flag_is_told_as_a_bad_variable_is(tmp_path: Path) -> None:
    done = library("serve", "--writes-per-turn", "0", "--port", "0", cwd=tmp_path)
    assert one_line_failure(done) == (
        "Error: --writes-per-turn / LIBRARY_WRITES_PER_TURN: must be at least 1"
    )


def test_the_readme_configuration_table_lists_every_setting_once() -> None:
    text = README.read_text()
    table = text[text.index("## Configuration") : text.index("### Token changes")]
    rows = _ROW.findall(table)
    variables = [variable for variable, _ in rows]
    assert sorted(variables) == sorted(variable_of(field) for field in Settings.model_fields)
    assert len(variables) == len(set(variables))
    expected_flags = {variable_of(field): flag_of(field) or "" for field in Settings.model_fields}
    assert dict(rows) == expected_flags


def test_help_names_every_flag_and_its_variable() -> None:
    help_text = CliRunner().invoke(serve, ["--help"], terminal_width=100).output
    for field in Settings.model_fields:
        flag = flag_of(field)
        if flag is not None:
            assert re.search(rf"^  {flag}[ /\[]", help_text, re.M), flag
            assert variable_of(field) in help_text
    literal = get_args(Settings.model_fields["log_format"].annotation)
    assert f"--log-format [{'|'.join(literal)}]" in help_text
