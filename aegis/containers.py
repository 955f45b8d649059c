"""The ``containers`` table as operators see it: the listing, ``aegis ack`` and
``aegis maintenance``. These need the database only, never the Docker engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aegis.errors import UsageError
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


def _row(app: Aegis, name: str) -> Row:
    row = app.db.fetch_one("container_by_name", host=app.settings.host, name=name)
    if row is None:
        raise UsageError(f"no container {name!r} on host {app.settings.host!r} "
                         "(see aegis containers)")
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
    """Pause action on ``name`` for ``duration_s`` seconds, or resume it (None)."""
    if duration_s is not None and duration_s <= 0:
        raise UsageError("--for must be a positive duration (30m, 1h, 2d)")
    until = None if duration_s is None else now + timedelta(seconds=duration_s)
    host = app.settings.host
    row = app.db.fetch_one("container_maintenance", host=host, name=name, until=until,
                           action="maintenance_on" if until else "maintenance_off", now=now)
    assert row is not None
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
