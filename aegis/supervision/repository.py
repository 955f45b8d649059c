"""The owner of the ``containers`` table (aegis/storage/sql/containers.sql): each
supervised container's strike state, and the supervisor's copy of its rows for a
PostgreSQL outage.

While the database is unreachable the supervisor decides from the rows it last read or
wrote (``KeptRows``), and each decision is spooled with its events; the spool's replay
(``replay_decision``) writes them back, once, when the database returns.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aegis.core.errors import DatabaseUnavailable
from aegis.storage.db import Json, Queries, Row
from aegis.storage.events import Event
from aegis.storage.outbox import Notification
from aegis.storage.store import event_from_record, event_record, insert_event
from aegis.supervision.docker import Seen
from aegis.supervision.labels import own_labels
from aegis.supervision.strikes import Decision, StrikeState, SupervisionMode

_TIMES = ("strike_at", "healthy_since", "last_action_at", "next_check_at", "seen_at",
          "oom_restart_at")
_JSON = ("incident_log", "docker_restarts")


class Containers:
    """The named queries of the ``containers`` table, on the pool or in a transaction."""

    def __init__(self, db: Queries) -> None:
        self.db = db

    # --- the supervisor's ---

    def of_host(self, host: str) -> list[Row]:
        """Every row of ``host``, present or removed."""
        return self.db.fetch_all("containers_of_host", host=host)

    def by_name(self, host: str, name: str) -> Row | None:
        return self.db.fetch_one("container_by_name", host=host, name=name)

    def due(self, host: str, now: datetime) -> list[Row]:
        """Rows whose strike timer has come due."""
        return self.db.fetch_all("containers_due", host=host, now=now)

    def next_due(self, host: str, now: datetime) -> datetime | None:
        """The earliest strike timer still ahead, or None."""
        row = self.db.fetch_one("containers_next_due", host=host, now=now)
        return None if row is None else row["next_check_at"]

    def adopt_renamed(self, host: str, name: str, container_id: str) -> Row | None:
        """The row of this container id under its old name, renamed to ``name``."""
        return self.db.fetch_one("container_adopt_renamed", host=host, name=name,
                                 container_id=container_id)

    def adopt(self, host: str, name: str, compose_project: str,
              compose_service: str) -> Row | None:
        """The row of a removed container of the same compose service, given to ``name``."""
        return self.db.fetch_one("container_adopt", host=host, name=name,
                                 compose_project=compose_project,
                                 compose_service=compose_service)

    def insert(self, **params: Any) -> None:
        """A container seen for the first time (nothing if another process came first)."""
        self.db.execute("container_insert", **params)

    def first_row(self, host: str, seen: Seen, has_healthcheck: bool,
                  now: datetime) -> Row | None:
        """The row of a container this host has none for under its name: its own under an
        old name (renamed while no daemon saw the event), a removed container's of the
        same compose service (re-created by compose), else a new one."""
        renamed = self.adopt_renamed(host, seen.name, seen.id)
        if renamed is not None:
            return renamed
        if seen.compose_project and seen.compose_service:
            adopted = self.adopt(host, seen.name, seen.compose_project, seen.compose_service)
            if adopted is not None:
                return adopted
        self.insert(host=host, name=seen.name, container_id=seen.id, image=seen.image,
                    compose_project=seen.compose_project,
                    compose_service=seen.compose_service, status=seen.status,
                    health=seen.health, has_healthcheck=has_healthcheck, seen_at=now)
        return self.by_name(host, seen.name)

    def save(self, params: dict[str, Any]) -> bool:
        """What was observed and decided; False when the row changed since it was read."""
        return self.db.fetch_one("container_save", **_jsonb(params)) is not None

    def restore(self, params: dict[str, Any]) -> None:
        """A decision made while the database was unreachable, whatever the row's version."""
        self.db.execute("container_restore", **_jsonb(params))

    def lock(self, host: str, name: str) -> Row | None:
        """The row, locked until the transaction ends."""
        return self.db.fetch_one("container_lock", host=host, name=name)

    def set_log(self, host: str, name: str, incident: int, log: Sequence[dict[str, Any]],
                affected: Sequence[str]) -> Row | None:
        """The open incident's log after a step outside a decision; None when the row has
        moved on to another incident."""
        return self.db.fetch_one("container_set_log", host=host, name=name, incident=incident,
                                 incident_log=Json(list(log)), affected=list(affected))

    def open_parent(self, host: str, name: str, network_parent: str | None,
                    compose_project: str | None, services: Sequence[str]) -> Row | None:
        """name and folded_into of a container ``name`` depends on that is in an open
        incident, or None."""
        return self.db.fetch_one("container_open_parent", host=host, name=name,
                                 network_parent=network_parent or "",
                                 compose_project=compose_project or "", services=list(services))

    def note_oom(self, host: str, container_id: str, now: datetime) -> None:
        self.db.execute("container_note_oom", host=host, container_id=container_id, now=now)

    def set_stopped(self, host: str, container_id: str, stopped: bool, now: datetime) -> None:
        self.db.execute("container_set_stopped", host=host, container_id=container_id,
                        stopped=stopped, now=now)

    def mark_removed(self, host: str, container_id: str, now: datetime) -> None:
        self.db.execute("container_mark_removed", host=host, container_id=container_id,
                        now=now)

    def rename(self, host: str, old_name: str, new_name: str) -> None:
        self.db.execute("container_rename", host=host, old_name=old_name, new_name=new_name)

    def restarts_unrecorded(self, host: str) -> list[Row]:
        """Restarts decided and saved whose outcome no event records (with restart_at)."""
        return self.db.fetch_all("containers_restart_unrecorded", host=host)

    # --- operators, reports, metrics, retention ---

    def listing(self, host: str | None) -> list[Row]:
        """``aegis containers``: the rows of ``host`` (None: every host)."""
        return self.db.fetch_all("containers_listing", host=host)

    def acknowledge(self, host: str, name: str, now: datetime, reason: str,
                    log: Sequence[dict[str, Any]]) -> Row | None:
        return self.db.fetch_one("container_ack", host=host, name=name, now=now,
                                 reason=reason, incident_log=Json(list(log)))

    def set_maintenance(self, host: str, name: str, until: datetime | None,
                        now: datetime) -> Row | None:
        """Maintenance until ``until`` (None: ended); None when ``host`` has no such row."""
        return self.db.fetch_one("container_maintenance", host=host, name=name, until=until,
                                 action="maintenance_on" if until else "maintenance_off",
                                 now=now)

    def in_maintenance(self, as_of: datetime, limit: int) -> list[Row]:
        """(host, container) of every container in maintenance at ``as_of``."""
        return self.db.fetch_all("status_maintenance_containers", as_of=as_of, limit=limit)

    def per_host(self) -> dict[str, Row]:
        """host -> counts of its present containers (all, supervised, unhealthy,
        in_incident) and its open incidents (``aegis hosts``, the status page)."""
        return {row["host"]: row for row in self.db.fetch_all("fleet_containers")}

    def any_present(self) -> bool:
        row = self.db.fetch_one("metrics_has_containers")
        return bool(row and row["present"])

    def states(self, host: str) -> list[Row]:
        """name, state and strikes of each supervised container of ``host``."""
        return self.db.fetch_all("metrics_containers", host=host)

    def of_note(self, as_of: datetime, limit: int) -> list[Row]:
        """Present containers of every host in an incident, unhealthy, struck or in
        maintenance at ``as_of``: escalated first (the status page)."""
        return self.db.fetch_all("page_containers_of_note", as_of=as_of, limit=limit)

    def prune(self, cutoff: datetime, from_time: datetime, batch_rows: int) -> Row | None:
        """Delete one batch of rows of containers removed before ``cutoff``."""
        return self.db.fetch_one("cleanup_containers_batch", cutoff=cutoff,
                                 from_time=from_time, batch_rows=batch_rows)


def open_parent(containers: Containers, kept: KeptRows, host: str, seen: Seen,
                row: Row) -> str | None:
    """The container ``seen`` depends on (its network's owner, a compose service
    it depends on) when that one is in an open incident: the incident it folds into (the
    parent's own parent, when the parent is folded too). From the kept rows while
    PostgreSQL is down."""
    if not (seen.network_parent or seen.depends_on) or (
            seen.health != "unhealthy" and row["phase"] == "ok"):
        return None
    try:
        found = containers.open_parent(host, seen.name, seen.network_parent,
                                       seen.compose_project, seen.depends_on)
    except DatabaseUnavailable:
        found = next((r for r in kept.of(host) if r["phase"] != "ok"
                      and r["name"] != seen.name and r["removed_at"] is None
                      and (seen.network_parent in (r["container_id"], r["name"])
                           or (r["compose_project"] == seen.compose_project
                               and r["compose_service"] in seen.depends_on))), None)
    return None if found is None else str(found["folded_into"] or found["name"])


def stop_request(seen: Seen, row: Row) -> tuple[bool, datetime | None]:
    """Whether (and when) a person asked Docker to stop ``seen``. A request made
    of the container a row belonged to before (re-created under the same name, or
    adopted by its compose successor) does not apply to this one."""
    if not row["stopped_by_user"] or row["container_id"] not in ("", seen.id):
        return False, None
    return True, row["stop_requested_at"]


def _jsonb(params: dict[str, Any]) -> dict[str, Any]:
    return {**params, **{key: Json(params[key]) for key in _JSON}}


def strike_state(row: Row) -> StrikeState:
    return StrikeState(phase=row["phase"], strikes=row["strikes"], incident=row["incident"],
                       strike_at=row["strike_at"], healthy_since=row["healthy_since"],
                       restarts=tuple(sorted(row["restarts"] or ())),
                       incident_class=row["incident_class"], folded_into=row["folded_into"],
                       oom_restart_at=row["oom_restart_at"],
                       docker_restarts=tuple((datetime.fromisoformat(at), count, code)
                                             for at, count, code in row["docker_restarts"]
                                             or ()))


def save_params(host: str, seen: Seen, row: Row, decision: Decision, has_healthcheck: bool,
                mode: SupervisionMode, shown: str, maintenance_label: bool,
                problems: tuple[str, ...], now: datetime,
                autoheal: str | None = None) -> dict[str, Any]:
    """What ``container_save`` writes for ``decision``: the sighting, the mode, the labels
    aegis reads (docker-autoheal's ``autoheal`` label too), the new strike state (the last
    action only when something was done) and the incident's class, log and dependants (a
    new incident starts with an empty log)."""
    state = decision.state
    acted = decision.action != "none"
    new_incident = state.incident != row["incident"]
    return {
        "host": host, "name": seen.name, "version": row["version"],
        "container_id": seen.id, "image": seen.image,
        "compose_project": seen.compose_project, "compose_service": seen.compose_service,
        "status": seen.status, "health": seen.health, "has_healthcheck": has_healthcheck,
        "supervision": mode, "state": shown, "phase": state.phase,
        "strikes": state.strikes, "incident": state.incident,
        "strike_at": state.strike_at, "healthy_since": state.healthy_since,
        "restarts": list(state.restarts), "maintenance_label": maintenance_label,
        "label_problems": list(problems), "labels": own_labels(seen.labels, autoheal),
        "last_action": decision.action if acted else None,
        "last_action_at": now if acted else None,
        "last_reason": decision.reason if acted else None,
        "next_check_at": decision.next_check_at,
        # the sighting time is refreshed only on a change, to keep sweeps write-free
        "seen_at": now,
        "incident_class": state.incident_class, "folded_into": state.folded_into,
        "incident_log": [] if new_incident else list(row["incident_log"] or ()),
        "affected": [] if new_incident else list(row["affected"] or ()),
        "docker_restarts": [[at.isoformat(), count, code]
                            for at, count, code in state.docker_restarts],
        "oom_restart_at": state.oom_restart_at,
    }


def changes(row: Row, params: dict[str, Any]) -> bool:
    """Whether saving ``params`` would change ``row`` (a sweep of a steady host writes
    nothing)."""
    if row["removed_at"] is not None:
        return True
    if sorted(row["restarts"] or []) != params["restarts"]:
        return True
    keys = ("container_id", "image", "compose_project", "compose_service", "status",
            "health", "has_healthcheck", "supervision", "state", "phase", "strikes",
            "incident", "strike_at", "healthy_since", "maintenance_label",
            "next_check_at", "stopped_by_user", "incident_class", "folded_into",
            "oom_restart_at", "docker_restarts")
    if any(row[key] != params[key] for key in keys):
        return True
    return bool(list(row["label_problems"] or []) != params["label_problems"]
                or (row.get("labels") or {}) != params["labels"])


def in_maintenance(row: Row, now: datetime) -> bool:
    until = row.get("maintenance_until")
    return bool(row.get("maintenance_label")) or (until is not None and until > now)


# --- the supervisor's copy of its rows, for a database outage ---


class KeptRows:
    """Rows as last read or written, per host and name, shared by the supervisors of one
    supervision (the watcher's, the sweep's, each background restart's)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], Row] = {}
        self._lock = threading.Lock()

    def keep(self, *rows: Row | None) -> None:
        with self._lock:
            for row in rows:
                if row is not None:
                    self._rows[(row["host"], row["name"])] = dict(row)

    def keep_if_unchanged(self, read: Row, new: Row) -> bool:
        """Replace the kept row with ``new`` if it is still the one ``read`` (same
        version): the offline twin of ``container_save``'s check, so two threads deciding
        from the same row cannot both act. False when another decision came first."""
        key = (read["host"], read["name"])
        with self._lock:
            current = self._rows.get(key)
            if current is not None and current["version"] != read["version"]:
                return False
            self._rows[key] = dict(new)
            return True

    def of(self, host: str, name: str | None = None) -> list[Row]:
        """The kept rows of ``host`` (or of one container)."""
        with self._lock:
            return [dict(row) for (h, n), row in self._rows.items()
                    if h == host and (name is None or n == name)]

    def update(self, host: str, container_id: str, **values: Any) -> None:
        """The kept rows of ``container_id`` with ``values`` set: the offline twin of
        ``container_set_stopped`` and ``container_note_oom``."""
        with self._lock:
            for key, row in self._rows.items():
                if key[0] == host and row["container_id"] == container_id:
                    self._rows[key] = {**row, **values}

    def due(self, host: str, now: datetime) -> list[Row]:
        """The offline twin of ``containers_due``: kept rows whose timer has come due."""
        return [row for row in self.of(host) if row["removed_at"] is None
                and row["next_check_at"] is not None and row["next_check_at"] <= now]

    def next_due(self, host: str, now: datetime) -> datetime | None:
        """The offline twin of ``containers_next_due``: the earliest timer still ahead."""
        return min((row["next_check_at"] for row in self.of(host)
                    if row["removed_at"] is None and row["next_check_at"] is not None
                    and row["next_check_at"] > now), default=None)


def saved_offline(row: Row, params: dict[str, Any]) -> Row:
    """``row`` as ``container_save`` would have left it."""
    merged = {**row, **{k: v for k, v in params.items() if k != "version"},
              "removed_at": None, "version": row["version"] + 1}
    for key in ("last_action", "last_action_at", "last_reason"):
        if params[key] is None:
            merged[key] = row[key]
    return merged


def decision_record(params: dict[str, Any],
                    events: Sequence[tuple[Event, Notification | None]]) -> dict[str, Any]:
    """A decision made while the database was unreachable, as a spool record."""
    data = {key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in params.items()}
    data["restarts"] = [t.isoformat() for t in params["restarts"]]
    return {"kind": "container_decision", "params": data,
            "events": [event_record(event, notify) for event, notify in events]}


def replay_decision(tx: Queries, record: dict[str, Any]) -> None:
    """Write a spooled decision (spool kind ``container_decision``): the row whatever its
    version (only this host's daemon decides for its containers) and its events, each
    once (by uid)."""
    # a record spooled by a version before 0009_incidents lacks the incident's columns
    params = {"incident_class": None, "incident_log": [], "folded_into": None, "affected": [],
              "docker_restarts": [], "oom_restart_at": None, **record["params"]}
    for key in _TIMES:
        if params.get(key) is not None:
            params[key] = datetime.fromisoformat(params[key])
    params["restarts"] = [datetime.fromisoformat(t) for t in params["restarts"]]
    params.setdefault("labels", None)  # spooled by a version that kept no labels
    Containers(tx).restore(params)
    for event in record["events"]:
        insert_event(tx, *event_from_record(event))
