"""Restarting containers: the restart itself (strike 2), the containers that share its
network namespace, and the outcome of restarts a daemon decided and saved but was killed
before recording (completed from Docker's ``StartedAt``, never made again).

The events watcher restarts in the background (``restart_in_background``), so one slow
stop (a container that ignores SIGTERM takes its whole stop timeout) never holds up the
events of the others; the sweep restarts in its own job thread. Either way, a container
being restarted is not judged again until the restart is over (``RestartTracker``), and
the daemon drains the restarts under way before it exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from aegis.core.config import Settings
from aegis.core.logs import get_logger
from aegis.storage.db import Queries
from aegis.storage.events import Event, EventType, Importance
from aegis.storage.outbox import IncidentStep
from aegis.storage.runtime import Runtime
from aegis.storage.store import event_record, insert_event
from aegis.supervision import incidents
from aegis.supervision import labels as L
from aegis.supervision.docker import (
    Seen,
    docker_endpoint,
    docker_errors,
    docker_time,
    forbidden,
    inspected,
    seen_from_inspect,
    seen_from_listing,
)
from aegis.supervision.incidents import details
from aegis.supervision.repository import Containers
from aegis.supervision.strikes import Decision

# A restart decided by a daemon that stopped before recording it, and not made by Docker
# this long after, is recorded as not made (until then it may still be under way).
RESTART_OUTCOME_WAIT_S = 60.0
RESTART_FORBIDDEN_HINT = ("allow container restarts on the socket proxy (ALLOW_RESTARTS=1), "
                          "or set AEGIS_REMEDIATION=observe to record and escalate only")


class RestartTracker:
    """The restarts one supervision is making right now, and the slots of its background
    restarts (AEGIS_MAX_PARALLEL_RESTARTS at once; more wait for one to end)."""

    def __init__(self) -> None:
        self._in_flight: dict[tuple[str, str], str] = {}  # (host, name) -> container id
        self._changed = threading.Condition()
        self._slots: threading.BoundedSemaphore | None = None

    def slots(self, limit: int) -> threading.BoundedSemaphore:
        """The semaphore of background restarts, made on first use with ``limit``."""
        with self._changed:
            if self._slots is None:
                self._slots = threading.BoundedSemaphore(limit)
            return self._slots

    def in_progress(self, host: str, name: str) -> bool:
        """True while the container ``name`` of ``host`` is being restarted."""
        with self._changed:
            return (host, name) in self._in_flight

    def in_progress_id(self, container_id: str) -> bool:
        """True while the container with this (full) id is being restarted."""
        with self._changed:
            return bool(container_id) and container_id in self._in_flight.values()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no restart is under way; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._in_flight:
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    return False
                self._changed.wait(left_s)
        return True

    def begin(self, host: str, name: str, container_id: str) -> None:
        with self._changed:
            self._in_flight[(host, name)] = container_id

    def end(self, host: str, name: str) -> None:
        with self._changed:
            self._in_flight.pop((host, name), None)
            self._changed.notify_all()


class Actor(Protocol):
    """What a restart needs of the supervisor that decided it."""

    host: str
    client: Any
    log: Any
    settings: Settings
    restarts: RestartTracker

    @property
    def runtime(self) -> Runtime: ...

    def restart_refusal(self, seen: Seen, parsed: L.ContainerLabels,
                        now: datetime) -> str | None: ...

    def with_client(self, client: Any) -> Actor: ...

    def restart_ended(self, container_id: str) -> None: ...


def restart(actor: Actor, decision: Decision, seen: Seen, now: datetime) -> None:
    """Strike 2, already decided and saved: restart now, in this thread."""
    actor.restarts.begin(actor.host, seen.name, seen.id)
    try:
        _restart(actor, decision, seen, now)
    finally:
        actor.restarts.end(actor.host, seen.name)


def restart_in_background(actor: Actor, client_factory: Callable[[], Any],
                          decision: Decision, seen: Seen,
                          now: datetime) -> threading.Thread | None:
    """Strike 2, already decided and saved: restart in a thread of its own, through a
    Docker client of its own (the caller's may be closed when its stream breaks), so
    restarts of different containers never wait for each other. Returns the thread (None
    when there was none to be had and the restart was made here)."""
    # before the thread starts: never judged or completed meanwhile
    actor.restarts.begin(actor.host, seen.name, seen.id)
    thread = threading.Thread(
        target=_restart_in_thread, args=(actor, client_factory, decision, seen, now),
        name=f"aegis-restart-{seen.name}", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: restart here rather than not at all
        restart(actor, decision, seen, now)
        return None
    return thread


def _restart_in_thread(actor: Actor, client_factory: Callable[[], Any], decision: Decision,
                       seen: Seen, now: datetime) -> None:
    try:
        with actor.restarts.slots(actor.settings.max_parallel_restarts):
            client = client_factory()
            try:
                _restart(actor.with_client(client), decision, seen, now)
            finally:
                client.close()
    except Exception as exc:  # recorded in the log; the sweep completes what it can
        get_logger().error("container_restart_crashed", container=seen.name,
                           host=actor.host, error=str(exc), exc_info=True)
    finally:
        actor.restarts.end(actor.host, seen.name)
        actor.restart_ended(seen.id)


def _restart(actor: Actor, decision: Decision, seen: Seen, now: datetime) -> None:
    """Ask Docker, record the outcome, then restart the containers sharing its network
    namespace."""
    seen = inspected(actor.client, seen)
    settings = actor.runtime.settings
    timeout_s = L.effective_stop_timeout_s(seen, settings)
    carried = details(actor.host, seen, decision, probe_output=seen.probe_output,
                      probe_exit_code=seen.probe_exit_code,
                      restarts_last_hour=len(decision.state.restarts),
                      docker_restart_count=seen.docker_restart_count,
                      stop_timeout_s=timeout_s)
    actor.log.warning("container_restarting", container=seen.name, strike=2,
                      stop_timeout_s=timeout_s)
    store = actor.runtime.store
    try:
        actor.client.api.restart(seen.id, timeout=int(timeout_s))
    except docker_errors() as exc:
        if forbidden(exc):  # a proxy's allow-list: every restart will fail until it changes
            actor.log.error("container_restart_forbidden", container=seen.name,
                            docker_host=docker_endpoint(), hint=RESTART_FORBIDDEN_HINT)
        event = store.new_event(
            EventType.CONTAINER_RESTART_FAILED, f"{seen.name}: restart failed: {exc}",
            importance=Importance.HIGH, source="supervisor", timestamp=now,
            details={**carried, "error": str(exc)})
        record_step(actor.runtime, event, seen, decision.state.incident,
                    IncidentStep.RESTART_FAILED,
                    str(exc))
        return
    event = store.new_event(
        EventType.CONTAINER_RESTARTED,
        f"{seen.name} restarted (strike 2 of 3): {decision.reason}; "
        f"restart {len(decision.state.restarts)} this hour",
        importance=Importance.HIGH, source="supervisor", timestamp=now, details=carried)
    record_step(actor.runtime, event, seen, decision.state.incident, IncidentStep.RESTARTED,
                f"{decision.reason} (restart {len(decision.state.restarts)} this hour)")
    restart_dependents(actor, seen, now)


def record_step(runtime: Runtime, event: Event, seen: Seen, incident: int, step: IncidentStep,
                text: str) -> None:
    """Record ``event``, a step of the container's open incident taken outside a decision
    (a restart made or failed): the step goes into its log and, when it calls for one,
    the alert (an edit of its living message) is queued, all in one transaction. With
    PostgreSQL down the event is spooled; the step waits for the next one."""
    runtime.store.log_event(event)

    def write(tx: Queries) -> None:
        insert_event(tx, event, _step_alert(tx, runtime, event, seen, incident, step, text))

    runtime.store.write(write, event_record(event))


def _step_alert(tx: Queries, runtime: Runtime, event: Event, seen: Seen, incident: int,
                step: IncidentStep, text: str) -> Any:
    containers = Containers(tx)
    host = runtime.settings.host
    row = containers.lock(host, seen.name)
    if row is None or row["incident"] != incident:
        return None
    count = sum(1 for s in row["incident_log"] or () if s["step"] == step)
    found = incidents.add(incidents.of_row(row, probe_output=seen.probe_output),
                          incidents.step(step, event.timestamp, text, probe=seen.probe_output))
    found, notify = incidents.alert(runtime.settings, found,
                                    dedup_key=f"{step}:{host}:{seen.name}:{incident}:{count + 1}")
    containers.set_log(host, seen.name, incident, found.log, found.affected)
    return notify


def complete_restarts(actor: Actor, now: datetime) -> int:
    """Record the outcome of restarts a daemon decided and saved but stopped (killed)
    before recording: ``container_restarted`` when Docker started the container since
    the decision, ``container_restart_failed`` when it has not a while later. Never
    restarts anything itself. Returns how many were recorded."""
    recorded = 0
    store = actor.runtime.store
    for row in Containers(actor.runtime.db).restarts_unrecorded(actor.host):
        if actor.restarts.in_progress(actor.host, row["name"]):
            continue  # this process is making it right now
        try:
            attrs = actor.client.api.inspect_container(row["container_id"] or row["name"])
        except docker_errors():
            continue
        started = docker_time(str((attrs.get("State") or {}).get("StartedAt") or ""))
        decided = row["restart_at"]
        seen = seen_from_inspect(attrs)
        # a restart waits for the stop timeout before Docker starts the container again
        wait_s = RESTART_OUTCOME_WAIT_S + L.effective_stop_timeout_s(seen,
                                                                    actor.runtime.settings)
        carried = {"container": row["name"], "host": actor.host,
                   "container_id": (row["container_id"] or "")[:12], "image": row["image"],
                   "incident": row["incident"], "strikes": row["strikes"],
                   "restarts_last_hour": len(row["restarts"] or []),
                   "reason": row["last_reason"], "class": row["incident_class"],
                   "recorded_late": True}
        if started is not None and started >= decided:
            event = store.new_event(
                EventType.CONTAINER_RESTARTED, f"{row['name']} restarted (strike 2 of 3); "
                "recorded late: the daemon stopped during the restart",
                importance=Importance.HIGH, source="supervisor", timestamp=decided,
                details=carried)
            record_step(actor.runtime, event, seen, row["incident"], IncidentStep.RESTARTED,
                        f"{row['last_reason']} (recorded late)")
        elif (now - decided).total_seconds() > wait_s:
            event = store.new_event(
                EventType.CONTAINER_RESTART_FAILED, f"{row['name']}: restart not made: the "
                "daemon stopped between deciding it and asking Docker",
                importance=Importance.HIGH, source="supervisor", timestamp=decided,
                details={**carried, "error": "the daemon stopped before the restart"})
            record_step(actor.runtime, event, seen, row["incident"],
                        IncidentStep.RESTART_FAILED,
                        "the daemon stopped before the restart")
        else:
            continue  # Docker may still be stopping it: the next sweep or start decides
        recorded += 1
    return recorded


def restart_dependents(actor: Actor, seen: Seen, now: datetime) -> None:
    """Restart, after ``seen``, the running containers that use its network namespace,
    except those aegis may not restart (protected, opted out, out of scope, in
    maintenance): they are left alone and ``container_dependent_skipped`` says why."""
    modes = {f"container:{seen.id}", f"container:{seen.name}"}
    try:
        entries = actor.client.api.containers(filters={"status": "running"})
    except docker_errors():
        return
    store = actor.runtime.store
    for entry in entries:
        dependent = seen_from_listing(entry)
        if dependent.network_mode not in modes:
            continue
        carried = {"container": dependent.name, "host": actor.host,
                   "container_id": dependent.id[:12], "image": dependent.image,
                   "network_of": seen.name,
                   "reason": f"shares the network namespace of {seen.name}"}
        autoheal = L.autoheal_label(actor.runtime.settings)
        refusal = actor.restart_refusal(dependent, L.parse_labels(dependent.labels, autoheal),
                                        now)
        if refusal is not None:
            store.record_event(
                EventType.CONTAINER_DEPENDENT_SKIPPED,
                f"{dependent.name} shares {seen.name}'s network but is {refusal}: "
                "not restarted", importance=Importance.HIGH, source="supervisor", timestamp=now,
                details={**carried, "skipped_because": refusal})
            continue
        try:
            actor.client.api.restart(dependent.id, timeout=int(
                L.effective_stop_timeout_s(dependent, actor.runtime.settings)))
        except docker_errors() as exc:
            actor.log.error("container_dependent_restart_failed", container=dependent.name,
                            error=str(exc))
            continue
        store.record_event(
            EventType.CONTAINER_RESTARTED,
            f"{dependent.name} restarted after {seen.name} (shared network namespace)",
            importance=Importance.HIGH, source="supervisor", timestamp=now, details=carried)
