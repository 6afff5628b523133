"""The database named in start-up lines and errors, never with its password."""

from __future__ import annotations

import pytest

from server.app.startup import describe_database


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:pw@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://u@h/db?password=s3cret&sslmode=require", "?password=***&sslmode=require"),
        ("postgres://u@h/db?sslpassword=k3y", "?sslpassword=***"),
        (
            "postgresql://postgres@/library?host=/tmp/x",
            "postgresql://postgres@/library?host=/tmp/x",
        ),
    ],
)
def test_passwords_are_hidden(url: str, shown: str) -> None:
    described = describe_database(url)
    assert shown in described
    assert "pw" not in described.replace("postgres", "")
    assert "s3cret" not in described
    assert "k3y" not in described
