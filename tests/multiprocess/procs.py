"""Which worker processes a ``serve --workers N`` runs, and which one holds a connection."""

from __future__ import annotations

from pathlib import Path

from tests.support.server import children

_ESTABLISHED = "01"


def workers_of(parent: int) -> list[int]:
    """The uvicorn worker processes of ``parent`` (spawned children, not its helpers)."""
    found = []
    for child in children(parent):
        cmdline = _read(Path(f"/proc/{child}/cmdline")).replace("\0", " ")
        if "spawn_main" in cmdline:
            found.append(child)
    return sorted(found)


def holding_connection(pids: list[int], port: int) -> list[int]:
    """Those of ``pids`` with an established TCP connection on local ``port``."""
    return _holders(pids, _established_inodes(port))


def _holders(pids: list[int], inodes: set[str]) -> list[int]:
    holders = []
    for pid in pids:
        try:
            links = [p.readlink().name for p in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            holders.append(pid)
    return holders


def holding_connection_from(pids: list[int], port: int, client_port: int) -> list[int]:
    """Those of ``pids`` holding the server end of a connection from ``client_port``."""
    return _holders(pids, _established_inodes(port, client_port))


def _established_inodes(port: int, remote_port: int | None = None) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(Path(table)).splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port != port or fields[3] != _ESTABLISHED:
                continue
            if remote_port is None or int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                inodes.add(fields[9])
    return inodes


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
