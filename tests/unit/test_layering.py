"""The layering the README states, enforced on every import in ``server/``.

rpc (handlers) never reaches into storage; storage never knows about Connect,
the generated code or the handlers; the domain knows none of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "server"

FORBIDDEN = {
    "rpc": ("server.storage",),
    "storage": ("connectrpc", "server.gen", "server.rpc", "server.app"),
    "domain": ("connectrpc", "server.gen", "server.rpc", "server.storage", "server.app"),
}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, including imports inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_it_must_not(layer: str) -> None:
    files = sorted((SERVER / layer).rglob("*.py"))
    assert files, f"no modules in server/{layer}"
    breaches = [
        f"{path.relative_to(SERVER.parent)} imports {module}"
        for path in files
        for module in sorted(imports(path))
        if module.startswith(FORBIDDEN[layer]) and module.removeprefix(FORBIDDEN[layer][0]) != "_"
    ]
    assert breaches == []


def test_the_check_sees_a_breach(tmp_path: Path) -> None:
    module = tmp_path / "handler.py"
    module.write_text("def f():\n    from server.storage.sqlite import SQLiteStorage\n")
    assert "server.storage.sqlite" in imports(module)
