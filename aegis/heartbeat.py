"""The daemon's local heartbeat file and pid file under AEGIS_HOME.

``aegis check`` and ``/healthz`` read the heartbeat file, so they answer while Postgres
is down. Status rules are pure functions of ``now``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

HEARTBEAT_FILE = "heartbeat.json"
PID_FILE = "aegis.pid"
MIN_STALE_AFTER_S = 30.0


@dataclass(frozen=True)
class Heartbeat:
    pid: int
    host: str
    instance_id: str
    version: str
    started_at: datetime
    last_heartbeat_at: datetime
    status: str  # running | stopping | stopped

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["last_heartbeat_at"] = self.last_heartbeat_at.isoformat()
        return data


def stale_after_s(heartbeat_interval_s: float) -> float:
    """A heartbeat older than this means the loop is not alive."""
    return max(3 * heartbeat_interval_s, MIN_STALE_AFTER_S)


def is_fresh(heartbeat: Heartbeat, now: datetime, heartbeat_interval_s: float) -> bool:
    age_s = (now - heartbeat.last_heartbeat_at).total_seconds()
    return heartbeat.status == "running" and age_s <= stale_after_s(heartbeat_interval_s)


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


def read_pid(home: Path) -> int | None:
    try:
        return int((home / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited process its parent has not reaped yet is not alive
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def daemon_status(heartbeat: Heartbeat | None, alive: bool, now: datetime,
                  heartbeat_interval_s: float) -> str:
    """running | stale | stopped | never_started, from the heartbeat and the pid's liveness."""
    if heartbeat is None:
        return "never_started"
    if heartbeat.status == "stopped":
        return "stopped"
    if not alive:
        return "stale"
    age_s = (now - heartbeat.last_heartbeat_at).total_seconds()
    return "running" if age_s <= stale_after_s(heartbeat_interval_s) else "stale"
