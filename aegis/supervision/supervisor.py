"""Applying the three-strike protocol to real containers.

The supervisor reads what Docker reports (one listing for a sweep, one inspect or the
event itself for an event; see aegis/supervision/docker.py), asks ``strikes.decide`` what
to do, and saves the new strike state in the ``containers`` table together with the
events (and alerts) the decision calls for, in one transaction, *before* acting: a daemon
killed at any moment never restarts twice (restarts: aegis/supervision/restarts.py).
While PostgreSQL is down it decides from the rows it last read and spools each decision
with its events.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aegis.core.errors import DatabaseUnavailable
from aegis.core.logs import get_logger
from aegis.storage.db import Row
from aegis.storage.runtime import Runtime
from aegis.storage.store import insert_event
from aegis.supervision import incidents, restarts, triage
from aegis.supervision import labels as L
from aegis.supervision.docker import (
    EngineAvailability,
    Seen,
    inspected,
    memory_usage,
    own_container_ids,
    seen_from_event,
    seen_from_inspect,
    seen_from_listing,
)
from aegis.supervision.incidents import Record
from aegis.supervision.repository import (
    Containers,
    KeptRows,
    changes,
    decision_record,
    in_maintenance,
    open_parent,
    save_params,
    saved_offline,
    stop_request,
    strike_state,
)
from aegis.supervision.restarts import RestartTracker
from aegis.supervision.strikes import Observed, SupervisionMode, decide, display_state
from aegis.supervision.triage import TriageClass

# An unhealthy event at most this old (by its own timestamp) is acted on as it stands;
# older ones (replayed after a reconnection) are checked against an inspect first.
FRESH_EVENT_S = 5.0
STOP_SIGNALS = frozenset({"2", "9", "15", "SIGINT", "SIGKILL", "SIGTERM"})


@dataclass
class SupervisionState:
    """What the supervisors of one supervision share: the rows kept for a database
    outage, the restarts under way and the engine's availability."""

    kept: KeptRows = field(default_factory=KeptRows)
    restarts: RestartTracker = field(default_factory=RestartTracker)
    engine: EngineAvailability = field(default_factory=EngineAvailability)
    # the exit code of each container's latest ``die`` (a running container's inspect
    # shows 0): the exit codes of a crash loop
    exit_codes: dict[str, int] = field(default_factory=dict)


class Supervisor:
    """Decides and acts for the containers of one host, through one Docker client."""

    def __init__(self, runtime: Runtime, client: Any, *,
                 own_ids: frozenset[str] | None = None,
                 restart_client: Callable[[], Any] | None = None,
                 state: SupervisionState | None = None,
                 on_restart_end: Callable[[str], None] | None = None) -> None:
        """``restart_client``: restart in the background, each restart through a client
        from this factory (the events watcher); None: restart in the calling thread.
        ``on_restart_end(container_id)``: told when a background restart is over, so the
        container is judged again at once (the watcher queues it as an event)."""
        self.runtime, self.client, self.settings = runtime, client, runtime.settings
        self.host = runtime.settings.host
        self.own_ids = own_container_ids() if own_ids is None else own_ids
        self.restart_client = restart_client
        self.on_restart_end = on_restart_end
        self.state = state or SupervisionState()
        self.kept = self.state.kept
        self.restarts = self.state.restarts
        self.containers = Containers(runtime.db)
        self.log = get_logger().bind(host=self.host)
        self.soonest: datetime | None = None  # the earliest strike timer it knows of
        # the background restarts of a sweep that waits for them (None: not waiting)
        self._joining: list[threading.Thread] | None = None

    def restart_ended(self, container_id: str) -> None:
        if self.on_restart_end is not None:
            self.on_restart_end(container_id)

    def note_timer(self, due: datetime) -> None:
        """Keep ``due`` as ``soonest`` if it is the earliest strike timer known."""
        if self.soonest is None or due < self.soonest:
            self.soonest = due

    def with_client(self, client: Any) -> Supervisor:
        """The same supervisor, speaking to Docker through ``client``; its own timer."""
        twin = copy.copy(self)
        twin.client, twin.soonest = client, None
        return twin

    # --- entry points ---

    def reconcile(self, now: datetime, *, wait: bool = False) -> dict[str, Any]:
        """One sweep over one full container listing; returns counts for job_runs. With
        ``wait``, returns once the restarts it started in the background are over (the
        sweep job: its restarts run side by side, and the job ends after them)."""
        entries = self.client.api.containers(all=True)
        self._joining = [] if wait else None
        try:
            restarts.complete_restarts(self, now)
            rows = {row["name"]: row for row in self.containers.of_host(self.host)}
            self.kept.keep(*rows.values())
            offline = False
        except DatabaseUnavailable:
            rows, offline = {row["name"]: row for row in self.kept.of(self.host)}, True
        counts: dict[str, int] = {"containers": len(entries), "supervised": 0, "unhealthy": 0}
        present: set[str] = set()
        for entry in entries:
            seen = seen_from_listing(entry)
            present.add(seen.id)
            action, mode = self.evaluate(seen, rows.get(seen.name), now)
            if mode == SupervisionMode.SUPERVISED:
                counts["supervised"] += 1
            if seen.health == "unhealthy":
                counts["unhealthy"] += 1
            if action != "none":
                counts[action] = counts.get(action, 0) + 1
        for row in rows.values():
            if not offline and row["removed_at"] is None and row["container_id"] \
                    and row["container_id"] not in present:
                self.containers.mark_removed(self.host, row["container_id"], now)
        for thread in self._joining or ():
            thread.join()
        self._joining = None
        return counts

    def check(self, container: str, now: datetime) -> str:
        """Inspect one container (id or name) and apply the protocol; returns the action."""
        from docker.errors import NotFound

        try:
            attrs = self.client.api.inspect_container(container)
        except NotFound:
            return "none"
        seen = seen_from_inspect(attrs)
        return self.evaluate(seen, self.row(seen.name), now)[0]

    def row(self, name: str) -> Row | None:
        """The container's row; the one last read or written while PostgreSQL is down."""
        try:
            row = self.containers.by_name(self.host, name)
        except DatabaseUnavailable:
            return next(iter(self.kept.of(self.host, name)), None)
        self.kept.keep(row)
        return row

    def check_due(self, now: datetime,
                  check: Callable[[str, datetime], object] | None = None) -> int:
        """Re-evaluate containers whose strike timer came due (``check``: how; default
        here and now), then set ``soonest`` to the earliest timer still ahead: a burst of
        strikes falls due together, each on time. Returns how many were due."""
        try:
            due = self.containers.due(self.host, now)
        except DatabaseUnavailable:
            due = self.kept.due(self.host, now)
        for row in due:
            if self.restarts.in_progress(self.host, row["name"]):
                continue  # its start event brings it back once the restart is over; an
                # inspect now would wait on the engine's lock of a container being stopped
            (check or self.check)(row["container_id"] or row["name"], now)
        try:
            ahead = self.containers.next_due(self.host, now)
        except DatabaseUnavailable:
            ahead = self.kept.next_due(self.host, now)
        if ahead is not None:
            self.note_timer(ahead)
        return len(due)

    def handle_event(self, event: dict[str, Any], now: datetime) -> str | None:
        """Act on one Docker event. Returns ``"die"`` when the caller should check the
        container again shortly (a die is followed by a start when Docker restarts it)."""
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        container_id = actor.get("ID") or event.get("id") or ""
        attributes = actor.get("Attributes") or {}
        if action.startswith("health_status"):
            if not self._strike_from_event(event, now):
                self.check(container_id, now)
        elif action == "start":
            if self.restarts.in_progress_id(container_id):
                return None  # aegis's own restart: judged when it is over
            self._set_stopped(container_id, False, now)
            with contextlib.suppress(DatabaseUnavailable):
                restarts.complete_restarts(self, now)
            self.check(container_id, now)
        elif action == "stop" or (action == "kill"
                                  and str(attributes.get("signal", "")) in STOP_SIGNALS):
            if not self.restarts.in_progress_id(container_id):  # not aegis's own restart
                self._set_stopped(container_id, True, now)
        elif action == "die":
            with contextlib.suppress(TypeError, ValueError):
                self.state.exit_codes[container_id] = int(str(attributes.get("exitCode")))
            return "die"
        elif action == "oom":  # a process inside was killed for memory; it may run on
            self._note_oom(container_id, now)
        elif action == "destroy":
            self.state.exit_codes.pop(container_id, None)
            self.containers.mark_removed(self.host, container_id, now)
        elif action == "rename":
            old_name = str(attributes.get("oldName", "")).lstrip("/")
            new_name = str(attributes.get("name", ""))
            if old_name and new_name:
                self.containers.rename(self.host, old_name, new_name)
        return None

    def _set_stopped(self, container_id: str, stopped: bool, now: datetime) -> None:
        """Remember whether (and when) a person or a tool asked Docker to stop the
        container; in the kept rows too, so it holds while PostgreSQL is down."""
        with contextlib.suppress(DatabaseUnavailable):
            self.containers.set_stopped(self.host, container_id, stopped, now)
        self.kept.update(self.host, container_id, stopped_by_user=stopped,
                         stop_requested_at=now if stopped else None)

    def _note_oom(self, container_id: str, now: datetime) -> None:
        with contextlib.suppress(DatabaseUnavailable):
            self.containers.note_oom(self.host, container_id, now)
        self.kept.update(self.host, container_id, oom_at=now)

    def _strike_from_event(self, event: dict[str, Any], now: datetime) -> bool:
        """Strike 1 straight from a fresh ``unhealthy`` event, without asking a busy engine
        for an inspect first; False (inspect and check) for anything else: other events,
        stale ones, and containers already in an incident, whose next step is a restart
        or an escalation and is never taken on an event's word alone."""
        seen = seen_from_event(event)
        if seen is None:
            return False
        age_s = time.time() - float(event.get("timeNano") or 0) / 1e9
        if age_s > FRESH_EVENT_S:
            return False
        row = self.row(seen.name)
        if row is not None and (row["phase"] != "ok" or row["removed_at"] is not None):
            return False
        self.evaluate(seen, row, now)
        return True

    # --- one container ---

    def restart_refusal(self, seen: Seen, parsed: L.ContainerLabels, now: datetime
                        ) -> str | None:
        """Why aegis may not restart ``seen`` (a container it restarts only because it
        shares a restarted container's network), or None when it may."""
        refusal = L.restart_refusal(self.settings, seen, parsed, self.own_ids)
        if refusal is not None:
            return refusal
        with contextlib.suppress(DatabaseUnavailable):
            row = self.row(seen.name)
            if row is not None and in_maintenance({**row, "maintenance_label": False}, now):
                return "in maintenance"
        return None

    def evaluate(self, seen: Seen, row: Row | None, now: datetime
                 ) -> tuple[str, SupervisionMode]:
        """Decide and act for one container; returns (action, supervision mode)."""
        if row is not None and triage.needs_inspect(seen, row["phase"], row["next_check_at"],
                                                    stop_request(seen, row)[0], now):
            # (asked again below: the inspect may tell another stop than the listing)
            seen = inspected(self.client, seen)  # a listing tells no restart policy, no triage
        autoheal = L.autoheal_label(self.settings)
        parsed = L.parse_labels(seen.labels, autoheal)
        has_healthcheck = seen.has_healthcheck
        if has_healthcheck is None:
            has_healthcheck = bool(row and row["has_healthcheck"])
        if row is None:
            if not (has_healthcheck or L.has_aegis_label(seen.labels, autoheal)):
                return "none", SupervisionMode.IGNORED
            row = self._insert(seen, has_healthcheck, now)
            if row is None:
                return "none", SupervisionMode.IGNORED
        mode = L.supervision_mode(self.settings, seen, parsed, has_healthcheck, self.own_ids)
        if self.restarts.in_progress(self.host, seen.name):
            return "none", mode  # judged again once the restart is over
        maintenance = bool(parsed.maintenance) or in_maintenance(
            {**row, "maintenance_label": False}, now)
        rules = L.strike_policy(self.settings, parsed, mode, maintenance,
                                L.effective_stop_timeout_s(seen, self.settings))
        state = strike_state(row)
        stopped, stop_requested_at = stop_request(seen, row)
        decision = decide(state, self._observed(seen, row, stopped, stop_requested_at), rules,
                          now)
        shown = display_state(decision.state.phase, supervision=mode, maintenance=maintenance)
        params = save_params(self.host, seen, row, decision, has_healthcheck, mode, shown,
                             bool(parsed.maintenance), parsed.problems, now, autoheal)
        params.update(stopped_by_user=stopped, stop_requested_at=stop_requested_at)
        due = decision.next_check_at  # one already past waits for the next poll instead
        if due is not None and due > now:
            self.note_timer(due)
        if decision.action == "none" and not changes(row, params):
            return "none", mode
        records = incidents.notes(self.runtime.store, self.host, seen, row, parsed.problems,
                                  mode, now)
        if decision.action not in ("none", "restart"):
            # an escalation carries the probe output, exit code and policy: an inspect's
            about = inspected(self.client, seen) if decision.action == "escalate" else seen
            memory = (memory_usage(self.client, about) if decision.action == "escalate"
                      and decision.state.incident_class == TriageClass.OOM else None)
            record, incident = incidents.record(
                self.runtime.store, self.settings, decision, state.phase, about, now,
                incidents.of_row({**row, **params}), memory)
            params.update(incident_log=list(incident.log))
            records.append(record)
        fold = decision.state.folded_into if decision.state.folded_into != row["folded_into"] \
            else None
        if not self._save(row, params, records, fold):  # another thread or daemon came first
            self.log.info("container_decision_superseded", container=seen.name)
            return "none", mode
        if decision.action == "restart":  # decided and saved above: never made twice
            if self.restart_client is not None:
                thread = restarts.restart_in_background(self, self.restart_client, decision,
                                                        seen, now)
                if thread is not None and self._joining is not None:
                    self._joining.append(thread)
            else:
                restarts.restart(self, decision, seen, now)
        return decision.action, mode

    def _observed(self, seen: Seen, row: Row, stopped: bool,
                  stop_requested_at: datetime | None) -> Observed:
        """What Docker reports, with triage's reading of an inspect and the parent it
        depends on when that one is in an incident."""
        oom, problem, hung_timeout_s = False, None, None
        if seen.details:  # an inspect's
            peak = None
            if seen.exit_code == triage.OOM_EXIT_CODE and seen.memory_limit \
                    and not seen.oom_killed:
                peak = memory_usage(self.client, seen).get("max_usage")
            oom = triage.oom_killed(seen, row.get("oom_at"), peak)
            problem = triage.broken_probe(seen)
            hung_timeout_s = triage.hung_timeout_s(seen)
        exit_code = seen.exit_code if seen.status != "running" \
            else self.state.exit_codes.get(seen.id)  # a crash's, not the running one's 0
        return Observed(seen.status, seen.health, exit_code, seen.oom_killed, stopped,
                        stop_requested_at, seen.restart_policy, seen.docker_restart_count,
                        inspected=bool(seen.details), oom=oom, probe_problem=problem,
                        hung_timeout_s=hung_timeout_s,
                        parent_incident=open_parent(self.containers, self.kept, self.host,
                                                    seen, row))

    def _save(self, row: Row, params: dict[str, Any], records: list[Record],
              fold: str | None = None) -> bool:
        """The row and the events its decision calls for, in one transaction: a daemon
        killed at any moment leaves both or neither. False when the row changed since it
        was read (nothing written). With PostgreSQL down, both go to the spool as one
        record, written back once when it returns; until then the kept row stands in.
        ``fold``: the parent whose incident this container's is folded into now; its row
        and living message name it as affected, in the same transaction."""
        store = self.runtime.store
        try:
            store.replay_spool()  # a decision spooled earlier is older than this one
            with self.runtime.db.transaction() as tx:
                if not Containers(tx).save(params):
                    return False
                for event, notify in records:
                    insert_event(tx, event, notify)
                if fold is not None:
                    incidents.fold_into(tx, self.settings, fold, params,
                                        records[-1][0].uid if records else None)
        except DatabaseUnavailable as exc:
            if not self.kept.keep_if_unchanged(row, saved_offline(row, params)):
                return False
            store.spool.append(decision_record(params, records))
            self.log.warning("store_spooled", kind="container_decision", error=str(exc))
        else:
            self.kept.keep(saved_offline(row, params))
        for event, _ in records:
            store.log_event(event)
        return True

    def _insert(self, seen: Seen, has_healthcheck: bool, now: datetime) -> Row | None:
        try:
            row = self.containers.first_row(self.host, seen, has_healthcheck, now)
            self.kept.keep(row)
            return row
        except DatabaseUnavailable:
            # never acted on without its row: a container this process has not seen in the
            # database (new, or the daemon started during the outage) waits for it
            return None
