"""Applying the three-strike protocol to real containers, one at a time:

    observe   what Docker reports (one listing for a sweep, one inspect or the event itself
              for an event), read for the protocol (aegis/supervision/observe.py)
    decide    ``strikes.decide``, a pure function (aegis/supervision/protocol/)
    persist   the new strike state with the events and messages it calls for, in one
              transaction, *before* acting (aegis/supervision/persist.py)
    act       a restart, in the background (aegis/supervision/restarter.py)

so a daemon killed at any moment never restarts twice. While PostgreSQL is down the
supervisor decides from the rows it last read and spools each decision with its events.
What a Docker event means for it is the watcher's (aegis/supervision/watcher.py).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aegis.core.clock import zone
from aegis.core.config import Settings
from aegis.core.errors import DatabaseUnavailable
from aegis.core.logs import get_logger, secret_values
from aegis.storage.runtime import Runtime
from aegis.supervision import observe
from aegis.supervision.docker import (
    EngineAvailability,
    Sighting,
    inspected,
    listing_key,
    log_tail,
    memory_usage,
    own_container_ids,
    sighting_from_inspect,
    sighting_from_listing,
)
from aegis.supervision.incidents import Incident
from aegis.supervision.maintenance import MaintenanceLog, report_ended
from aegis.supervision.observe import Assessment
from aegis.supervision.persist import Persister, Save, decision_update
from aegis.supervision.protocol import windows
from aegis.supervision.protocol.labels import autoheal_label, parse_labels, restart_refusal
from aegis.supervision.protocol.strikes import (
    INTERVENTIONS,
    Action,
    Decision,
    Observed,
    SupervisionMode,
    decide,
)
from aegis.supervision.protocol.triage import TriageClass
from aegis.supervision.protocol.windows import Window, configured_windows
from aegis.supervision.records import Record, Recorder
from aegis.supervision.repository import (
    ContainerRow,
    Containers,
    ContainerUpdate,
    LastKnownRows,
    SweepState,
)
from aegis.supervision.restarter import Restarter, RestartTracker
from aegis.supervision.rewire import NetworkParents, Rewirer
from aegis.supervision.storms import StormWatch


@dataclass(frozen=True)
class BackgroundRestarts:
    """Restarts made in threads of their own, each through a Docker client from
    ``client_factory``; ``on_end(container_id)`` is told when one is over, so the container
    is judged again at once (the watcher queues it as an event)."""

    client_factory: Callable[[], Any]
    on_end: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Swept:
    """A container a sweep decided nothing for: its listing entry's key and sighting, its
    row's version (None: no row), its supervision mode, and the settings it applied."""

    key: Hashable
    seen: Sighting
    version: int | None
    mode: SupervisionMode
    settings: int


@dataclass(frozen=True)
class Decided:
    """A decision made for one container and not saved yet: what it is, the container's
    supervision mode, and what saving it writes."""

    seen: Sighting
    decision: Decision
    mode: SupervisionMode
    save: Save


@dataclass
class SupervisionState:
    """What the supervisors of one supervision share: the rows last known (for a database
    outage), the restarts under way and the engine's availability."""

    kept: LastKnownRows = field(default_factory=LastKnownRows)
    restarts: RestartTracker = field(default_factory=RestartTracker)
    engine: EngineAvailability = field(default_factory=EngineAvailability)
    # the exit code of each container's latest ``die`` (a running container's inspect
    # shows 0): the exit codes of a crash loop
    exit_codes: dict[str, int] = field(default_factory=dict)
    parents: NetworkParents = field(default_factory=NetworkParents)
    # what the latest sweep found of each container it decided nothing for, by name: the
    # next sweep skips one whose listing entry and row are the same again
    swept: dict[str, Swept] = field(default_factory=dict)
    # the maintenance windows under way: what each covered and held back
    maintenance: MaintenanceLog = field(default_factory=MaintenanceLog)
    # the incidents opened lately and whether a storm may be open: a storm's detection
    storms: StormWatch = field(default_factory=StormWatch)
    _own_ids: frozenset[str] | None = None

    def own_ids(self) -> frozenset[str]:
        """The ids this process's own container may have (read once: a sweep's
        supervisor is made anew each time, and /proc/self/mountinfo is long on a host)."""
        if self._own_ids is None:
            self._own_ids = own_container_ids()
        return self._own_ids


class Supervisor:
    """Decides and acts for the containers of one host, through one Docker client."""

    def __init__(self, runtime: Runtime, client: Any, *,
                 own_ids: frozenset[str] | None = None,
                 state: SupervisionState | None = None,
                 background: BackgroundRestarts | None = None) -> None:
        """``own_ids``: the ids of the container aegis runs in (never restarted; default:
        read from /proc). ``background``: restart in threads of their own (the events
        watcher, the sweep job); None: restart in the calling thread."""
        self.runtime = runtime
        self.client = client
        self.host = runtime.settings.host
        self.background = background
        self.state = state or SupervisionState()
        self.own_ids = self.state.own_ids() if own_ids is None else own_ids
        self.kept = self.state.kept
        self.restarts = self.state.restarts
        self.containers = Containers(runtime.db)
        self.log = get_logger().bind(host=self.host)
        self.soonest: datetime | None = None  # the earliest strike timer it knows of
        # the background restarts of a sweep that waits for them (None: not waiting)
        self._joining: list[threading.Thread] | None = None
        self.settings = runtime.settings

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """The settings it applies, and the parts that record and act by them."""
        self._settings = settings
        self.windows = configured_windows(settings.maintenance_tables, settings.config_file)
        self.zone = zone(settings.timezone)
        self.recorder = Recorder(self.runtime.store, settings, self.state.storms)
        self.persister = Persister(self.runtime, self.kept, self.recorder, self.log)
        self.restarter = Restarter(self.runtime, self.restarts, self.recorder,
                                   refusal=self.restart_refusal,
                                   on_end=self.background.on_end if self.background else None)
        self.rewirer = Rewirer(self.runtime, self.restarts, self.state.parents,
                               refusal=self.restart_refusal,
                               client_factory=(self.background.client_factory
                                               if self.background else None))

    def note_timer(self, due: datetime) -> None:
        """Keep ``due`` as ``soonest`` if it is the earliest strike timer known."""
        if self.soonest is None or due < self.soonest:
            self.soonest = due

    def with_client(self, client: Any) -> Supervisor:
        """The same supervisor, speaking to Docker through ``client``; its own timer."""
        twin = copy.copy(self)
        twin.client = client
        twin.soonest = None
        return twin

    # --- entry points ---

    def reconcile(self, now: datetime, *, wait: bool = False) -> dict[str, Any]:
        """One sweep over one full container listing; returns counts for job_runs. With
        ``wait``, returns once the restarts it started in the background are over (the
        sweep job: its restarts run side by side, and the job ends after them).

        A container whose listing entry and row are as the previous sweep left them, with
        no incident, timer or maintenance under way, is not decided again: nothing about
        it can have changed (its row is not even read). Everything else is."""
        entries = self.client.api.containers(all=True)
        self._joining = [] if wait else None
        previous, self.state.swept = self.state.swept, {}
        listed = [self._sighting(entry, previous) for entry in entries]
        sightings = [seen for seen, _ in listed]
        try:
            self.restarter.complete_restarts(self.client, now)
            states: dict[str, SweepState] | None = {
                state.name: state for state in self.containers.sweep_states(self.host)}
        except DatabaseUnavailable:
            states = None
        counts: dict[str, int] = {"containers": len(entries), "supervised": 0, "unhealthy": 0}
        live = [window for window in self.windows if window.around(now) is not None]
        undecided = {seen.name for seen, key in listed
                     if self._unchanged(seen, key, previous.get(seen.name), states, now)
                     and not self._in_window(seen, live, now)}
        rows = self._rows_of([s.name for s in sightings if s.name not in undecided], states)
        for seen, key in listed:
            state = None if states is None else states.get(seen.name)
            if seen.name in undecided:
                action, mode = Action.NONE, previous[seen.name].mode
            else:
                action, mode = self.evaluate(seen, rows.get(seen.name), now)
            if action == Action.NONE and states is not None and (
                    state is None or state.steady(now)):
                # the row as this decision left it (read, inserted or saved just now)
                kept = self.kept.get(self.host, seen.name)
                self.state.swept[seen.name] = Swept(key, seen, None if kept is None
                                                    else kept.version, mode,
                                                    id(self.settings))
            counts["supervised"] += mode == SupervisionMode.SUPERVISED
            counts["unhealthy"] += seen.health == "unhealthy"
            if action != Action.NONE:
                counts[action.value] = counts.get(action.value, 0) + 1
        if states is not None:
            self._mark_removed(states.values(), {seen.id for seen in sightings}, now)
        rewiring = self.rewirer.sweep(self.client, sightings, now)
        for thread in [*(self._joining or ()), *(rewiring if wait else ())]:
            thread.join()
        self._joining = None
        report_ended(self.runtime, self.state.maintenance, now)
        return counts

    @staticmethod
    def _sighting(entry: dict[str, Any], previous: dict[str, Swept]
                  ) -> tuple[Sighting, Hashable]:
        """A listing entry as a sighting (the previous sweep's, when the entry is the
        same), with its key."""
        key = listing_key(entry)
        cached = previous.get(((entry.get("Names") or ["/?"])[0]).lstrip("/"))
        if cached is not None and cached.key == key:
            return cached.seen, key
        return sighting_from_listing(entry), key

    def _unchanged(self, seen: Sighting, key: Hashable, cached: Swept | None,
                   states: dict[str, SweepState] | None, now: datetime) -> bool:
        """Whether ``seen`` may be left undecided: the same listing entry, row version and
        settings as when the previous sweep decided nothing for it, and no incident,
        timer, maintenance or restart under way."""
        if states is None or cached is None or cached.key != key \
                or cached.settings != id(self.settings):
            return False
        state = states.get(seen.name)
        if (None if state is None else state.version) != cached.version:
            return False
        return (state is None or state.steady(now)) and not self.restarts.in_progress(
            self.host, seen.name)

    def _in_window(self, seen: Sighting, live: list[Window], now: datetime) -> bool:
        """Whether a maintenance window covers ``seen`` at ``now`` (``live``: the
        configured windows under way): such a container is always decided, so the window
        is noted and its end sets the container's timer."""
        if any(w.covers(seen.name, seen.compose_project, seen.compose_service) for w in live):
            return True
        labelled, _ = windows.label_window(seen.labels)
        return labelled is not None and labelled.in_zone(self.zone).around(now) is not None

    def _rows_of(self, names: list[str], states: dict[str, SweepState] | None
                 ) -> dict[str, ContainerRow]:
        """The rows of the containers to decide: read (and kept), or, while PostgreSQL is
        down, as last known."""
        if states is not None:
            try:
                rows = self.containers.by_names(self.host, names)
            except DatabaseUnavailable:
                pass
            else:
                self.kept.keep(*rows)
                return {row.name: row for row in rows}
        return {row.name: row for row in self.kept.of(self.host)}

    def _mark_removed(self, rows: Iterable[SweepState], present: set[str],
                      now: datetime) -> None:
        """Rows of containers the listing no longer shows: removed behind aegis's back."""
        for row in rows:
            if row.removed_at is None and row.container_id and row.container_id not in present:
                self.containers.mark_removed(self.host, row.container_id, now)

    def check(self, container: str, now: datetime, ahead: Sighting | None = None) -> Action:
        """Inspect one container (id or name) and apply the protocol; returns the action.
        ``ahead``: its inspect taken ahead of its strike timer (no event of it since),
        decided from with the row this process last read or wrote, so the check waits
        on neither the engine nor a query (a decision from a row changed since is dropped
        by its save, and taken again from the table's row)."""
        from docker.errors import NotFound

        if ahead is not None:
            superseded: list[Sighting] = []
            row = self.rows([ahead.name], kept_first=True).get(ahead.name)
            action = self.evaluate_all([(ahead, row)], now, superseded=superseded)[0][0]
            return self.evaluate(ahead, self.row(ahead.name), now)[0] if superseded else action
        try:
            attrs = self.client.api.inspect_container(container)
        except NotFound:
            return Action.NONE
        seen = sighting_from_inspect(attrs)
        return self.evaluate(seen, self.row(seen.name), now)[0]

    def row(self, name: str) -> ContainerRow | None:
        """The container's row; the one last read or written while PostgreSQL is down."""
        try:
            row = self.containers.by_name(self.host, name)
        except DatabaseUnavailable:
            return next(iter(self.kept.of(self.host, name)), None)
        self.kept.keep(row)
        return row

    def rows(self, names: Sequence[str], *, kept_first: bool = False
             ) -> dict[str, ContainerRow]:
        """The rows of some containers, by name, in one query; those last read or
        written while PostgreSQL is down. ``kept_first``: the rows last read or written
        where this process has one, and a query only for the others (a decision made from
        a row changed since is dropped by its save: see ``evaluate_all``)."""
        if kept_first:
            kept = {name: row for name in names
                    if (row := self.kept.get(self.host, name)) is not None}
            missing = [name for name in names if name not in kept]
            return {**kept, **self.rows(missing)} if missing else kept
        try:
            rows = self.containers.by_names(self.host, names)
        except DatabaseUnavailable:
            wanted = set(names)
            return {row.name: row for row in self.kept.of(self.host) if row.name in wanted}
        self.kept.keep(*rows)
        return {row.name: row for row in rows}

    def check_due(self, now: datetime,
                  check: Callable[[str, datetime], object] | None = None) -> int:
        """Re-evaluate containers whose strike timer came due (``check``: how; default
        here and now), then set ``soonest`` to the earliest timer still ahead: a burst of
        strikes falls due together, each on time; reports the maintenance windows over by
        now. Returns how many were due."""
        report_ended(self.runtime, self.state.maintenance, now)
        try:
            due = self.containers.due(self.host, now)
        except DatabaseUnavailable:
            due = self.kept.due(self.host, now)
        for found in due:
            if self.restarts.in_progress(self.host, found.name):
                # its start event brings it back once the restart is over; an inspect now
                # would wait on the engine's lock of a container being stopped
                continue
            (check or self.check)(found.container_id or found.name, now)
        try:
            ahead = self.containers.next_due(self.host, now)
        except DatabaseUnavailable:
            ahead = self.kept.next_due(self.host, now)
        if ahead is not None:
            self.note_timer(ahead)
        return len(due)

    def restart_refusal(self, seen: Sighting, now: datetime) -> str | None:
        """Why aegis may not restart ``seen`` (a container it restarts only because it
        shares a restarted container's network), or None when it may."""
        labels = parse_labels(seen.labels, autoheal_label(self.settings))
        refusal = restart_refusal(self.settings, seen, labels, self.own_ids)
        if refusal is not None:
            return refusal
        with contextlib.suppress(DatabaseUnavailable):
            row = self.row(seen.name)
            if row is not None and row.maintenance_requested(now):
                return "in maintenance"
        under_way = windows.current(observe.covering_windows(seen, labels, self.windows,
                                                             self.zone), now)
        if under_way is not None:
            return f"in the maintenance window {under_way[0].name}"
        return None

    # --- one container: observe, decide, persist, act ---

    def evaluate(self, seen: Sighting, row: ContainerRow | None, now: datetime
                 ) -> tuple[Action, SupervisionMode]:
        """Decide and act for one container; returns (action, supervision mode)."""
        return self.evaluate_all([(seen, row)], now)[0]

    def evaluate_all(self, sightings: Sequence[tuple[Sighting, ContainerRow | None]],
                     now: datetime, *, superseded: list[Sighting] | None = None
                     ) -> list[tuple[Action, SupervisionMode]]:
        """Decide for each container (with its row), save every decision that changes
        something in one transaction (a burst's strike 1s: one commit), then act on those
        saved; returns (action, supervision mode) of each, in order. A decision whose row
        changed since it was read is dropped (nothing written, nothing done); given
        ``superseded``, its sighting is added there, to be decided again from a fresh
        row."""
        decided = [self._decide(seen, row, now) for seen, row in sightings]
        pending = [outcome for outcome in decided if isinstance(outcome, Decided)]
        saved = iter(self.persister.save_all([outcome.save for outcome in pending]))
        results: list[tuple[Action, SupervisionMode]] = []
        for outcome in decided:
            if not isinstance(outcome, Decided):
                results.append(outcome)
            elif not next(saved):
                if superseded is None:
                    self.log.info("container_decision_superseded",
                                  container=outcome.seen.name)
                else:
                    superseded.append(outcome.seen)
                results.append((Action.NONE, outcome.mode))
            else:
                if outcome.decision.action in INTERVENTIONS:  # saved above: made once
                    self._restart(outcome.decision, outcome.seen, now)
                results.append((outcome.decision.action, outcome.mode))
        return results

    def _decide(self, seen: Sighting, row: ContainerRow | None, now: datetime
                ) -> Decided | tuple[Action, SupervisionMode]:
        """The decision for one container and what saving it writes; (action, mode) when
        there is nothing to save."""
        seen = observe.completed(self.client, seen, row, now)
        if row is None:
            if not observe.worth_a_row(self.settings, seen, row):
                return Action.NONE, SupervisionMode.IGNORED
            row = self.persister.first_row(seen, observe.has_healthcheck(seen, row), now)
            if row is None:
                return Action.NONE, SupervisionMode.IGNORED
        assessment = observe.with_window(
            observe.assess(self.settings, seen, row, now, self.own_ids), self.windows,
            self.zone, now)
        if assessment.window is not None and assessment.mode != SupervisionMode.IGNORED:
            self.state.maintenance.note(*assessment.window, seen)
        if self.restarts.in_progress(self.host, seen.name):
            return Action.NONE, assessment.mode  # judged again once the restart is over
        decision = decide(row.strike_state(), self._observed(assessment, row),
                          assessment.policy, now)
        update = decision_update(row, assessment, decision, now)
        if decision.next_check_at is not None and decision.next_check_at > now:
            self.note_timer(decision.next_check_at)  # one already past: the next poll's
        if decision.action == Action.NONE and not update.would_change(row):
            return Action.NONE, assessment.mode
        update, records = self._records(row, assessment, decision, update, now)
        folded_now = decision.state.folded_into != row.folded_into
        return Decided(seen, decision, assessment.mode, Save(
            row, update, records, decision.state.folded_into if folded_now else None))

    def _observed(self, assessment: Assessment, row: ContainerRow) -> Observed:
        seen = assessment.seen
        return observe.observed(self.client, assessment, row, self._parent_incident(seen, row),
                                self.state.exit_codes.get(seen.id))

    def _parent_incident(self, seen: Sighting, row: ContainerRow) -> str | None:
        """The incident ``seen`` folds into, if it depends on a container in one; from the
        rows last known while PostgreSQL is down."""
        if not observe.may_depend_on_another(seen, row):
            return None
        try:
            return self.containers.open_parent(self.host, seen)
        except DatabaseUnavailable:
            return self.kept.open_parent(self.host, seen)

    def _records(self, row: ContainerRow, assessment: Assessment, decision: Decision,
                 update: ContainerUpdate, now: datetime
                 ) -> tuple[ContainerUpdate, list[Record]]:
        """The events (and messages) a decision calls for, and ``update`` with the line it
        adds to the incident's log. An escalation reads the probe output, exit code and
        restart policy from an inspect, the container's last log lines, and an OOM kill's
        the memory figures."""
        seen = assessment.seen
        records = self.recorder.notes(seen, row, assessment.labels.problems, assessment.mode,
                                      now)
        if decision.action == Action.NONE or decision.action in INTERVENTIONS:
            return update, records  # a restart (or a recreate) is recorded once it is made
        incident = Incident.of_row(update)
        if decision.action == Action.ESCALATE:
            seen = inspected(self.client, seen)
            memory = (memory_usage(self.client, seen)
                      if decision.state.incident_class == TriageClass.OOM else {})
            incident = replace(incident, memory=memory,
                               log_tail=log_tail(self.client, seen, secret_values(self.settings)))
        record, incident = self.recorder.decided(decision, seen, incident, now,
                                                 phase_before=row.phase)
        return replace(update, incident_log=incident.log), [*records, record]

    def _restart(self, decision: Decision, seen: Sighting, now: datetime) -> None:
        if self.background is None:
            self.restarter.restart(self.client, decision, seen, now)
            return
        thread = self.restarter.start(self.background.client_factory, decision, seen, now)
        if thread is not None and self._joining is not None:
            self._joining.append(thread)
