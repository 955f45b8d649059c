"""The daemon's local heartbeat file and pid file under AEGIS_HOME, and the one rule of
daemon liveness.

``aegis check``, ``aegis status``, ``aegis doctor``, ``/healthz`` and the morning status all
judge a daemon with ``daemon_status``, so they agree; the first four read the heartbeat
file, so they answer while Postgres is down. The rules are pure functions of ``now``.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from aegis.core.jsonable import to_json

HEARTBEAT_FILE = "heartbeat.json"
PID_FILE = "aegis.pid"
HOME_ID_FILE = "home.id"
# a daemon silent for this many heartbeat intervals is stale...
STALE_HEARTBEATS = 3
# ...and never sooner than this
MIN_STALE_AFTER_S = 30.0


class DaemonStatus(StrEnum):
    RUNNING = "running"
    # it says it runs, but its heartbeat is old or its process is gone
    STALE = "stale"
    # stale for longer than AEGIS_PEER_TIMEOUT: its peers alert
    SILENT = "silent"
    # it recorded a clean stop
    STOPPED = "stopped"
    NEVER_STARTED = "never_started"


@dataclass(frozen=True)
class Heartbeat:
    """A daemon's latest heartbeat: its heartbeat file, and its row of ``daemons``."""

    pid: int
    host: str
    instance_id: str
    version: str
    started_at: datetime
    last_heartbeat_at: datetime
    # running or stopped, as the daemon last recorded it (daemon_status judges; the
    # table also allows stopping, which aegis does not write)
    status: str

    def to_json(self) -> dict[str, object]:
        return to_json(self)


def stale_after_s(heartbeat_interval_s: float) -> float:
    """A heartbeat older than this means the loop is not alive."""
    return max(STALE_HEARTBEATS * heartbeat_interval_s, MIN_STALE_AFTER_S)


def live_since(now: datetime, heartbeat_interval_s: float) -> datetime:
    """Daemons whose heartbeat is older than this are not alive at ``now``."""
    return now - timedelta(seconds=stale_after_s(heartbeat_interval_s))


def daemon_status(status: str | None, last_heartbeat_at: datetime | None, now: datetime,
                  heartbeat_interval_s: float, *, alive: bool = True) -> DaemonStatus:
    """A daemon's liveness from the status it recorded (None: never), its last heartbeat
    and, where this host can tell, whether its process is ``alive``."""
    if status is None or last_heartbeat_at is None:
        return DaemonStatus.NEVER_STARTED
    if status == DaemonStatus.STOPPED:
        return DaemonStatus.STOPPED
    if not alive or last_heartbeat_at < live_since(now, heartbeat_interval_s):
        return DaemonStatus.STALE
    return DaemonStatus.RUNNING


def peer_status(status: str | None, last_heartbeat_at: datetime | None, now: datetime,
                heartbeat_interval_s: float, peer_timeout_s: float) -> DaemonStatus:
    """``daemon_status`` as a peer sees a host from the database: ``silent`` once its
    heartbeat is older than ``peer_timeout_s`` without a clean stop."""
    found = daemon_status(status, last_heartbeat_at, now, heartbeat_interval_s)
    if found not in (DaemonStatus.RUNNING, DaemonStatus.STALE) or last_heartbeat_at is None:
        return found
    silent = (now - last_heartbeat_at).total_seconds() > peer_timeout_s
    return DaemonStatus.SILENT if silent else found


def file_status(heartbeat: Heartbeat | None, now: datetime, heartbeat_interval_s: float,
                *, alive: bool = True) -> DaemonStatus:
    """``daemon_status`` of the heartbeat file (None: there is none)."""
    if heartbeat is None:
        return DaemonStatus.NEVER_STARTED
    return daemon_status(heartbeat.status, heartbeat.last_heartbeat_at, now,
                         heartbeat_interval_s, alive=alive)


def write_heartbeat(home: Path, heartbeat: Heartbeat) -> None:
    """Atomically replace the heartbeat file."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / HEARTBEAT_FILE
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(heartbeat.to_json()), encoding="utf-8")
    os.replace(temporary, path)


def read_heartbeat(home: Path) -> Heartbeat | None:
    try:
        data = json.loads((home / HEARTBEAT_FILE).read_text(encoding="utf-8"))
        data["started_at"] = datetime.fromisoformat(data["started_at"])
        data["last_heartbeat_at"] = datetime.fromisoformat(data["last_heartbeat_at"])
        return Heartbeat(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def home_id(home: Path) -> str:
    """The id of this AEGIS_HOME (made on first use), with which the host's lease names
    where its holder runs: the daemon holding this home's pid-file lock knows that a lease
    held from the same home belongs to a daemon that is gone."""
    path = home / HOME_ID_FILE
    try:
        found = path.read_text(encoding="utf-8").strip()
    except OSError:
        found = ""
    if found:
        return found
    home.mkdir(parents=True, exist_ok=True)
    made = uuid.uuid4().hex
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(made + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return made


def read_pid(home: Path) -> int | None:
    try:
        return int((home / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
