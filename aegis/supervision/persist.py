"""Persist: a decision is saved with the events (and messages) it calls for, in one
transaction, *before* anything is done about it, so a daemon killed at any moment never
acts twice. The save is optimistic: a row another thread or daemon changed since it was
read is not written, and its decision is dropped. While PostgreSQL is down the row and its
events go to the spool as one record, written back once when it returns; the rows last
known stand in for the table meanwhile. An escalation decided then is sent at once by the
store's pager and spooled as sent (aegis/storage/store.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aegis.core.config import Settings
from aegis.core.errors import DatabaseUnavailable, StoreError
from aegis.storage.db import Queries
from aegis.storage.runtime import Runtime
from aegis.storage.store import event_from_record, insert_event
from aegis.supervision.docker import Sighting
from aegis.supervision.observe import Assessment
from aegis.supervision.protocol.labels import own_labels
from aegis.supervision.protocol.strikes import Action, Decision, shown_state
from aegis.supervision.records import Record, Recorder
from aegis.supervision.repository import (
    ContainerRow,
    Containers,
    ContainerUpdate,
    LastKnownRows,
    decision_record,
    replay_decision,
)
from aegis.supervision.storms import MemberStep, decided_step, route


def decision_update(row: ContainerRow, assessment: Assessment, decision: Decision,
                    now: datetime) -> ContainerUpdate:
    """What ``decision`` writes into ``row``: the sighting, the mode, the labels aegis
    reads, the new strike state (the last action only when something was done) and the
    incident's class, log and dependants (a new incident starts with an empty log)."""
    seen, state = assessment.seen, decision.state
    acted = decision.action != Action.NONE
    new_incident = state.incident != row.incident
    return ContainerUpdate(
        host=row.host, name=seen.name, version=row.version, container_id=seen.id,
        image=seen.image, compose_project=seen.compose_project,
        compose_service=seen.compose_service, status=seen.status, health=seen.health,
        has_healthcheck=assessment.has_healthcheck, supervision=assessment.mode,
        state=shown_state(state.phase, supervision=assessment.mode,
                          maintenance=assessment.maintenance),
        phase=state.phase, strikes=state.strikes, incident=state.incident,
        strike_at=state.strike_at, healthy_since=state.healthy_since, restarts=state.restarts,
        maintenance_label=bool(assessment.labels.maintenance),
        label_problems=assessment.labels.problems,
        labels=own_labels(seen.labels, assessment.autoheal),
        last_action=decision.action if acted else None, last_action_at=now if acted else None,
        last_reason=decision.reason if acted else None, next_check_at=decision.next_check_at,
        # the sighting's time is written only on a change, so a steady sweep writes nothing
        seen_at=now, stopped_by_user=assessment.stopped,
        stop_requested_at=assessment.stop_requested_at, incident_class=state.incident_class,
        folded_into=state.folded_into,
        incident_log=() if new_incident else row.incident_log,
        affected=() if new_incident else row.affected, docker_restarts=state.docker_restarts,
        oom_restart_at=state.oom_restart_at, climbed_at=state.climbed_at)


@dataclass(frozen=True)
class Save:
    """One decision to save: the row it was made from, what it writes, the events (and
    messages) it calls for, and the parent its incident folds into now, if any."""

    row: ContainerRow
    update: ContainerUpdate
    records: list[Record]
    fold_into: str | None = None


class Persister:
    """Writes one supervision's decisions: to the table, or to the spool and the rows last
    known while the database is away."""

    def __init__(self, runtime: Runtime, kept: LastKnownRows, recorder: Recorder,
                 log: Any) -> None:
        self.runtime = runtime
        self.kept = kept
        self.recorder = recorder
        self.log = log

    def save(self, row: ContainerRow, update: ContainerUpdate, records: list[Record],
             fold_into: str | None = None) -> bool:
        """The row and the events its decision calls for, in one transaction: a daemon
        killed at any moment leaves both or neither. False when the row changed since it
        was read (nothing written). ``fold_into``: the parent whose incident this
        container's is folded into now; its row and living message name it as affected,
        in the same transaction."""
        return self.save_all([Save(row, update, records, fold_into)])[0]

    def save_all(self, saves: Sequence[Save]) -> list[bool]:
        """Several containers' decisions in one transaction (one commit for a burst's
        strike 1s), each as ``save`` would write it alone, in order; whether each was
        written (False: its row changed since it was read, and it alone is dropped).
        While PostgreSQL is down each is spooled as its own record, as alone. A batch the
        database refuses for another reason (a deadlock with another daemon's save) is
        saved again one decision at a time, so one bad row never drops the others."""
        if not saves:
            return []
        store = self.runtime.store
        try:
            store.replay_spool()  # a decision spooled earlier is older than these
            if len(saves) == 1 and self._one_statement(saves[0]):
                save = saves[0]
                event = save.records[0][0]
                written = [save.records if Containers(self.runtime.db).save(save.update, event)
                           else None]
            else:
                with self.runtime.db.transaction() as tx:
                    written = [self._write(tx, save) for save in saves]
        except DatabaseUnavailable as exc:
            return [self._spool(save, str(exc)) for save in saves]
        except StoreError:
            if len(saves) == 1:
                raise
            return [self._save_alone(save) for save in saves]
        for save, records in zip(saves, written, strict=True):
            if records is not None:
                self.kept.keep(save.update.applied_to(save.row))
                for event, _ in records:
                    store.log_event(event)
        return [records is not None for records in written]

    def _one_statement(self, save: Save) -> bool:
        """Whether ``save`` is written by one statement, with no transaction of its own (a
        round trip where a transaction takes four): its row and its one event, with no
        message, no parent to fold into and a step no storm needs to see (counted by the
        storm watch, then)."""
        if save.fold_into is not None or len(save.records) != 1 \
                or save.records[0][1] is not None:
            return False
        step = decided_step(save.row, save.update)
        return step is None or self.recorder.routes_alone(step)

    def _save_alone(self, save: Save) -> bool:
        try:
            return self.save_all([save])[0]
        except StoreError as exc:
            self.log.warning("supervision_step_failed", step="save",
                             container=save.update.name, error=str(exc))
            return False

    def _write(self, tx: Queries, save: Save) -> list[Record] | None:
        """One decision's row and records in ``tx``; the records as written (a storm's
        member's own message dropped for the storm's), or None when its row changed."""
        records, step = save.records, decided_step(save.row, save.update)
        if not Containers(tx).save(save.update):
            return None
        if save.fold_into is not None:  # the parent's row before the storm's, always
            self.recorder.fold_into(tx, save.fold_into, save.update,
                                    records[-1][0].uid if records else None)
        if step is not None and not self.recorder.route(tx, step).keep_own:
            records = [(event, None) for event, _ in records]  # the storm's message
        for event, notify in records:
            insert_event(tx, event, notify)
        return records

    def _spool(self, save: Save, error: str) -> bool:
        """``save`` to the spool and the rows last known, the database being down; False
        when the row kept changed since it was read."""
        row, update, store = save.row, save.update, self.runtime.store
        if not self.kept.keep_if_unchanged(row, update.applied_to(row)):
            return False
        # an escalation cannot wait for the database: sent now, spooled as sent
        records = [(event, store.page_offline(notify)) for event, notify in save.records]
        spooled = decision_record(update, records)
        step = decided_step(row, update)
        if step is not None:  # routed to its host's storm when written back
            spooled["storm_step"] = step.to_json()
        store.spool.append(spooled)
        self.log.warning("store_spooled", kind="container_decision", error=error)
        for event, _ in records:
            store.log_event(event)
        return True

    def first_row(self, seen: Sighting, has_healthcheck: bool,
                  now: datetime) -> ContainerRow | None:
        """The row of a container seen for the first time, or None while the database is
        down: a container this process has not seen in the database (new, or the daemon
        started during the outage) is never acted on without its row."""
        try:
            row = Containers(self.runtime.db).first_row(self.runtime.settings.host, seen,
                                                        has_healthcheck, now)
        except DatabaseUnavailable:
            return None
        self.kept.keep(row)
        return row


def replay_routed(settings: Settings) -> Callable[[Queries, dict[str, Any]], None]:
    """The replay of a spooled decision (spool kind ``container_decision``): its row and
    events written back, and the step it took routed to its host's storm as when the
    database is up (aegis/supervision/storms.py): a member's own message dropped for the
    storm's."""

    def replay(tx: Queries, record: dict[str, Any]) -> None:
        replay_decision(tx, {**record, "events": []})
        events = [event_from_record(spooled) for spooled in record["events"]]
        step = record.get("storm_step")
        if step is not None and not route(tx, settings, MemberStep.from_json(step)).keep_own:
            # the storm's message instead; one already sent offline is recorded as sent
            events = [(event, notify if notify is not None and notify.sent else None)
                      for event, notify in events]
        for event, notify in events:
            insert_event(tx, event, notify)

    return replay
