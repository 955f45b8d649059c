"""This host: the journal folder, the daemon's heartbeat file, and the maintenance windows
of its configuration."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from aegis.core.clock import zone
from aegis.core.config import Settings
from aegis.core.processes import pid_alive
from aegis.doctor.checks import FAIL, OK, WARN, Check
from aegis.scheduling.heartbeat import DaemonStatus, file_status, read_heartbeat, read_pid
from aegis.supervision.protocol.windows import configured_windows


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


def check_maintenance_windows(settings: Settings, now: datetime) -> Check:
    """The configured ``[[maintenance]]`` windows, what each covers and when it next
    starts (a window a label sets is a container's: ``aegis containers`` shows it)."""
    tz = zone(settings.timezone)
    found = [window.in_zone(tz) for window in
             configured_windows(settings.maintenance_tables, settings.config_file)]
    if not found:
        return Check("maintenance", OK, "no [[maintenance]] window configured")
    lines = []
    for window in found:
        span = window.next_span(now)
        when = "never" if span is None else (
            f"under way until {span.end:%Y-%m-%d %H:%M} UTC" if span.start <= now
            else f"next {span.start:%Y-%m-%d %H:%M} UTC")
        lines.append(f"{window.name}: {window.describe()}, covers "
                     f"{', '.join(window.containers)}; {when}")
    return Check("maintenance", OK, "; ".join(lines))
