"""The embedded PostgreSQL (the ``pgserver`` package), used when no database is configured."""

import warnings
from pathlib import Path
from typing import Any

from aegis.core.errors import StoreError
from aegis.core.processes import pid_alive


def pgdata_dir(home: Path) -> Path:
    return home / "pgdata"


def is_running(home: Path) -> bool:
    """Whether the embedded server of ``home`` is up (without starting it)."""
    pid_file = pgdata_dir(home) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return pid_alive(pid)


def start(home: Path, *, keep_running: bool) -> str:
    """Start (or attach to) the embedded server under ``home``; return its DSN.

    A server this process started is stopped when the process exits, unless
    ``keep_running``; a server that was already running is always left up.
    """
    was_running = is_running(home)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = pgdata_dir(home)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    cleanup = None if keep_running or was_running else "stop"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server: Any = pgserver.get_server(pgdata, cleanup_mode=cleanup)  # type: ignore[attr-defined]
    except Exception as exc:
        raise StoreError(f"cannot start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    return str(server.get_uri())
