"""Settings refuse contradictory options before the server touches the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from server.app.settings import Settings

PEM = Path("cert.pem")


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"tls_cert": PEM}, "go together"),
        ({"tls_cert": PEM, "tls_key": PEM}, "add --http2"),
        ({"http2": True, "fd": 3}, r"--fd \(LIBRARY_FD\) is for the HTTP/1.1 server"),
        ({"http2": True, "workers": 2}, "runs one worker"),
        ({"http2": True, "tls_cert": PEM, "tls_key": PEM}, "cannot read 'cert.pem'"),
        ({"cors_origins": ["*"]}, "'\\*' is not allowed"),
        ({"cors_origins": ["site.example"]}, "'site.example' is not an origin"),
        ({"admin_token": "short"}, "at least 32"),
        ({"port": 70000}, "less than or equal to 65535"),
        ({"max_error_message": 120, "error_excerpt": 61}, "at most half"),
        ({"max_error_message": 50}, "greater than or equal to 120"),
        ({"http2_stream_window": 1000}, "greater than or equal to 65535"),
        ({"stream_idle_timeout": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_combinations_are_refused(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**options)


def test_environment_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARY_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("LIBRARY_WORKERS", "3")
    settings = Settings()
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.workers == 3


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARY_PORT", "9000")
    assert Settings(port=9100).port == 9100


def test_valid_tls_setup(tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    pem.write_text("not checked here: Envoy reads it")
    settings = Settings(http2=True, tls_cert=pem, tls_key=pem)
    assert settings.tls_cert == pem


def test_origins_with_ports_are_fine() -> None:
    origins = ["http://localhost:5173", "https://site.example", "http://[::1]:8000"]
    assert Settings(cors_origins=origins).cors_origins == origins


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`LIBRARY_{name.upper()}`" not in readme]
    assert not missing, f"add these to the README's Configuration table: {missing}"
