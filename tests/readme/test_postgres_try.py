"""The README's PostgreSQL "try it" blocks, as written, as root and as a user without root.

As root, the user without root is a throwaway account made with ``useradd``
and removed afterwards. It cannot run this checkout's ``.venv`` (its Python
lives under root's home), so it gets a ``.venv`` of its own from Debian's
Python 3.11 that loads this one's packages: the ``.venv/bin/library`` a user
of their own clone would have. Run without root, only that case applies.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.readme.conftest import REPO
from tests.readme.readme import Block, Foreground, assert_shows, free_port, run, wait_shows
from tests.support.postgres import find_bin_dir

AS_ROOT = os.geteuid() == 0
DEBIAN_PYTHON = Path("/usr/bin/python3")


@dataclass
class Reader:
    """Who runs the blocks, and where: their top directory and their ``TMPDIR``."""

    top: Path
    tmpdir: Path
    popen: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def as_postgres(self) -> str:
        """What the README's block sets ``AS`` to for this reader."""
        return "runuser -u postgres --" if "user" not in self.popen and AS_ROOT else ""


def _own_venv(top: Path) -> None:
    """A ``.venv`` for another user: Debian's Python with this checkout's packages."""
    version = subprocess.run(
        [str(DEBIAN_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == str(sys.version_info[:2]), f"{DEBIAN_PYTHON} is {version}: need the same"
    venv = top / ".venv"
    subprocess.run([str(DEBIAN_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True)
    shared = REPO / ".venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (venv / "lib" / shared.name / "site-packages" / "library-shared.pth").write_text(
        f"import site; site.addsitedir({str(shared / 'site-packages')!r})\n"
    )
    library = venv / "bin" / "library"
    # What pip writes for the entry point (uvicorn's workers re-import it, hence the guard).
    entry = (REPO / ".venv" / "bin" / "library").read_text().split("\n", 1)[1]
    library.write_text(f"#!{venv}/bin/python3\n{entry}")
    library.chmod(0o755)


@pytest.fixture(params=["root", "user"] if AS_ROOT else ["user"])
def reader(request: pytest.FixtureRequest) -> Iterator[Reader]:
    """Root, or a user without root, in a fresh top directory under /tmp."""
    # Under /tmp, not pytest's private tmp_path: the postgres user must reach it.
    top = Path(tempfile.mkdtemp(prefix="library-readme-"))
    top.chmod(0o755)
    tmpdir = top / "tmp"
    tmpdir.mkdir(mode=0o755)
    name = f"libreadme{uuid.uuid4().hex[:8]}"
    made_user = request.param == "user" and AS_ROOT
    try:
        if made_user:
            subprocess.run(
                ["useradd", "--no-create-home", "--shell", "/bin/bash", name], check=True
            )
            entry = pwd.getpwnam(name)
            _own_venv(top)
            for path in (top, tmpdir, *top.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
            popen: dict[str, Any] = {
                "user": entry.pw_uid,
                "group": entry.pw_gid,
                "extra_groups": [],
            }
            env = {"HOME": str(top), "USER": name, "LOGNAME": name}
            yield Reader(top, tmpdir, popen, env)
        else:
            (top / ".venv").symlink_to(REPO / ".venv")
            yield Reader(top, tmpdir)
    finally:
        _stop_leftover_clusters(tmpdir)
        shutil.rmtree(top, ignore_errors=True)
        if made_user:
            subprocess.run(["userdel", name], check=False)


def _stop_leftover_clusters(tmpdir: Path) -> None:
    """Stop a cluster a failed test left running (the README's stop block does it otherwise)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return
    for pid_file in tmpdir.glob("*/data/postmaster.pid"):
        data = pid_file.parent
        owner = pwd.getpwuid(data.stat().st_uid).pw_name
        extra: dict[str, Any] = {"user": owner} if AS_ROOT and owner != "root" else {}
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            check=False,
            **extra,
        )


@pytest.mark.postgres
def test_try_postgres_then_stop_and_remove(reader: Reader, readme: dict[str, Block]) -> None:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries are missing: apt-get install -y postgresql")
    port = free_port()
    env = {"LIBRARY_PORT": str(port), "TMPDIR": str(reader.tmpdir), **reader.env}
    server = Foreground(
        readme["pg-try"].text, reader.top, env, reader.top / "pg-try.log", **reader.popen
    )
    try:
        server.wait_serving(f"http://127.0.0.1:{port}")
        back = {f":{port}": ":8080", str(reader.tmpdir): "/tmp"}
        wait_shows(readme["pg-try"], server.output, back)
    finally:
        server.interrupt()
    assert "Stopping parent process" in server.output()

    (cluster,) = reader.tmpdir.iterdir()
    assert (cluster / "data" / "postmaster.pid").exists(), "Ctrl+C stops the server, not PostgreSQL"
    # The same terminal: the variables the first block set are still there.
    session = {"PGBIN": str(bin_dir), "D": str(cluster), "AS": reader.as_postgres, **reader.env}
    output = run(readme["pg-stop"].text, reader.top, session, **reader.popen)
    assert_shows(readme["pg-stop"], output, {str(reader.tmpdir): "/tmp"})
    assert not cluster.exists()
