"""The ``buf`` CLI, found where the Makefile finds it: in the virtualenv's bin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BUF = Path(sys.executable).with_name("buf")
"""The buf next to the interpreter running the tests: ``.venv/bin/buf``, the Makefile's."""


def run_buf(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``buf`` with ``args``; the caller checks the result."""
    return subprocess.run(
        [str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
