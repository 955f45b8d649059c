"""The ``containers`` table: as operators see it (the listing, ``aegis ack``, ``aegis
maintenance``: the database only, never the Docker engine), and the supervisor's copy of
its rows for a PostgreSQL outage: decisions made meanwhile are spooled with their events
and written back, once, when the database returns."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aegis.db import Cursorish
from aegis.errors import UsageError
from aegis.store import SPOOL_HANDLERS, Event, event_from_record, event_record, insert_event
from aegis.strikes import BUDGET_WINDOW, StrikeState, display_state

if TYPE_CHECKING:
    from aegis.api import Aegis

Row = dict[str, Any]


@dataclass(frozen=True)
class ContainerView:
    name: str
    id: str
    image: str
    health: str
    strikes: int
    state: str
    last_action: str | None
    last_action_at: datetime | None
    restarts_last_hour: int
    host: str
    maintenance_until: datetime | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "image": self.image, "health": self.health,
                "strikes": self.strikes, "state": self.state, "last_action": self.last_action,
                "last_action_at": self.last_action_at.isoformat() if self.last_action_at
                else None,
                "restarts_last_hour": self.restarts_last_hour, "host": self.host,
                "maintenance_until": self.maintenance_until.isoformat()
                if self.maintenance_until else None,
                "reason": self.reason}


def strike_state(row: Row) -> StrikeState:
    return StrikeState(phase=row["phase"], strikes=row["strikes"], incident=row["incident"],
                       strike_at=row["strike_at"], healthy_since=row["healthy_since"],
                       restarts=tuple(sorted(row["restarts"] or ())))


def in_maintenance(row: Row, now: datetime) -> bool:
    until = row.get("maintenance_until")
    return bool(row.get("maintenance_label")) or (until is not None and until > now)


def view(row: Row, now: datetime) -> ContainerView:
    restarts = [t for t in row["restarts"] or () if now - t < BUDGET_WINDOW]
    return ContainerView(
        name=row["name"], id=(row["container_id"] or "")[:12], image=row["image"],
        health=row["health"], strikes=row["strikes"],
        state=display_state(row["phase"], supervision=row["supervision"],
                            maintenance=in_maintenance(row, now)),
        last_action=row["last_action"], last_action_at=row["last_action_at"],
        restarts_last_hour=len(restarts), host=row["host"],
        maintenance_until=row["maintenance_until"], reason=row["last_reason"])


def listing(app: Aegis, now: datetime, *, all_hosts: bool = False) -> list[ContainerView]:
    rows = app.db.fetch_all("containers_listing",
                            host=None if all_hosts else app.settings.host)
    return [view(row, now) for row in rows]


def _unknown(app: Aegis, name: str) -> UsageError:
    return UsageError(f"no container {name!r} on host {app.settings.host!r} "
                      "(see aegis containers)")


def _row(app: Aegis, name: str) -> Row:
    row = app.db.fetch_one("container_by_name", host=app.settings.host, name=name)
    if row is None:
        raise _unknown(app, name)
    return row


def acknowledge(app: Aegis, name: str, now: datetime, *, by: str = "cli") -> bool:
    """A person takes over: strikes reset, remediation re-armed (the hourly restart budget
    is kept). Returns False when the container was not escalated (nothing recorded)."""
    row = _row(app, name)
    if row["phase"] != "escalated":
        return False
    host = app.settings.host
    reason = f"acknowledged by {by}"

    app.db.fetch_one("container_ack", host=host, name=name, now=now, reason=reason)
    app.store.record_event(
        "container_acknowledged", f"{name}: escalation acknowledged; remediation re-armed",
        importance="medium", source="cli",
        details={"container": name, "host": host, "incident": row["incident"], "by": by})
    return True


def set_maintenance(app: Aegis, name: str, now: datetime, duration_s: float | None) -> Row:
    """Pause action on ``name`` for ``duration_s`` seconds, or resume it (None). A name
    this host has no row for is refused, as by ``acknowledge``: a typo must not look
    like a container put safely into maintenance."""
    if duration_s is not None and duration_s <= 0:
        raise UsageError("--for must be a positive duration (30m, 1h, 2d)")
    until = None if duration_s is None else now + timedelta(seconds=duration_s)
    host = app.settings.host
    row = app.db.fetch_one("container_maintenance", host=host, name=name, until=until,
                           action="maintenance_on" if until else "maintenance_off", now=now)
    if row is None:
        raise _unknown(app, name)
    if until is None:
        app.store.record_event("container_maintenance_ended",
                               f"{name}: maintenance ended, remediation resumed",
                               importance="low", source="cli",
                               details={"container": name, "host": host})
    else:
        app.store.record_event("container_maintenance",
                               f"{name}: maintenance until {until:%Y-%m-%d %H:%M:%S} UTC",
                               importance="low", source="cli",
                               details={"container": name, "host": host,
                                        "until": until.isoformat()})
    return row


# --- the supervisor's copy of its rows, for a database outage ---

_TIMES = ("strike_at", "healthy_since", "last_action_at", "next_check_at", "seen_at")
_kept: dict[tuple[str, str], Row] = {}
_kept_lock = threading.Lock()


def keep(*rows: Row | None) -> None:
    """Remember rows as last read or written, per host and name (process-wide: every
    supervisor of this process shares them)."""
    with _kept_lock:
        for row in rows:
            if row is not None:
                _kept[(row["host"], row["name"])] = dict(row)


def keep_if_unchanged(read: Row, new: Row) -> bool:
    """Replace the remembered row with ``new`` if it is still the one ``read`` (same
    version): the offline twin of ``container_save``'s check, so two threads deciding
    from the same row cannot both act. False when another decision came first."""
    key = (read["host"], read["name"])
    with _kept_lock:
        current = _kept.get(key)
        if current is not None and current["version"] != read["version"]:
            return False
        _kept[key] = dict(new)
        return True


def kept(host: str, name: str | None = None) -> list[Row]:
    """The remembered rows of ``host`` (or of one container)."""
    with _kept_lock:
        return [dict(row) for (h, n), row in _kept.items()
                if h == host and (name is None or n == name)]


def saved_offline(row: Row, params: dict[str, Any]) -> Row:
    """``row`` as ``container_save`` would have left it."""
    merged = {**row, **{k: v for k, v in params.items() if k != "version"},
              "removed_at": None, "version": row["version"] + 1}
    for key in ("last_action", "last_action_at", "last_reason"):
        if params[key] is None:
            merged[key] = row[key]
    return merged


def decision_record(params: dict[str, Any], events: list[tuple[Event, Any]]) -> dict[str, Any]:
    """A decision made while the database was unreachable, as a spool record."""
    data = {key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in params.items()}
    data["restarts"] = [t.isoformat() for t in params["restarts"]]
    return {"kind": "container_decision", "params": data,
            "events": [event_record(event, notify) for event, notify in events]}


def replay_decision(tx: Cursorish, record: dict[str, Any]) -> None:
    """Write a spooled decision: the row whatever its version (only this host's daemon
    decides for its containers) and its events, each once (by uid)."""
    params = dict(record["params"])
    for key in _TIMES:
        if params.get(key) is not None:
            params[key] = datetime.fromisoformat(params[key])
    params["restarts"] = [datetime.fromisoformat(t) for t in params["restarts"]]
    tx.execute("container_restore", **params)
    for event in record["events"]:
        insert_event(tx, *event_from_record(event))


SPOOL_HANDLERS["container_decision"] = replay_decision
