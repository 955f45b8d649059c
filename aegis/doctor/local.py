"""This host: the journal folder, and the daemon's heartbeat file."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from aegis.core.config import Settings
from aegis.core.processes import pid_alive
from aegis.doctor.checks import FAIL, OK, WARN, Check
from aegis.scheduling.heartbeat import DaemonStatus, file_status, read_heartbeat, read_pid


def check_journal_dir(path: Path) -> Check:
    hint = f"create it and let aegis's user write to it: mkdir -p {path} && chown USER {path}"
    if path.is_dir():
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".aegis-doctor-"):
                pass
        except OSError as exc:
            return Check("journal", FAIL, f"{path} is not writable: {exc.strerror or exc}",
                         hint)
        return Check("journal", OK, f"{path} is writable")
    if path.exists():
        return Check("journal", FAIL, f"{path} exists and is not a folder",
                     "point AEGIS_JOURNAL_DIR at a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if os.access(parent, os.W_OK | os.X_OK):
        return Check("journal", OK, f"{path} will be created (under {parent})")
    return Check("journal", FAIL, f"{path} is missing and {parent} is not writable", hint)


def check_daemon(settings: Settings, now: datetime) -> Check:
    heartbeat = read_heartbeat(settings.home)
    pid = read_pid(settings.home) or (heartbeat.pid if heartbeat else None)
    alive = pid is not None and pid_alive(pid)
    status = file_status(heartbeat, now, settings.heartbeat_interval_s, alive=alive)
    if heartbeat is None:
        return Check("daemon", WARN, f"never started with AEGIS_HOME={settings.home}",
                     "start it: `aegis run`, or `docker compose up -d`")
    age_s = (now - heartbeat.last_heartbeat_at).total_seconds()
    detail = f"{status}: pid {heartbeat.pid} on {heartbeat.host}, heartbeat {age_s:.0f}s old"
    if status == DaemonStatus.RUNNING:
        return Check("daemon", OK, detail)
    if status == DaemonStatus.STOPPED:
        return Check("daemon", WARN, detail, "start it: `aegis run`, or `docker compose up -d`")
    return Check("daemon", FAIL, detail, "the loop is stuck or died: read its log, then "
                 "`aegis stop` and `aegis run` (or restart the container)")
