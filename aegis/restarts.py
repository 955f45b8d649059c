"""Restarting containers: the restart itself (strike 2), the containers that share its
network namespace, and the outcome of restarts a daemon decided and saved but was killed
before recording (completed from Docker's ``StartedAt``, never made again).

The events watcher restarts in the background (``restart_in_background``), so one slow
stop (a container that ignores SIGTERM takes its whole stop timeout) never holds up the
events of the others; the sweep restarts in its own job thread. Either way, a container
this process is restarting is not judged again until the restart is over
(``in_progress``), and the daemon waits for restarts under way before it exits
(``wait_idle``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aegis import labels as L
from aegis.engine import (
    DEFAULT_STOP_TIMEOUT_S,
    Seen,
    docker_endpoint,
    docker_errors,
    docker_time,
    forbidden,
    seen_from_listing,
)
from aegis.logs import get_logger
from aegis.strikes import Decision, Policy

if TYPE_CHECKING:
    from aegis.supervisor import Supervisor

# A restart decided by a daemon that stopped before recording it, and not made by Docker
# this long after, is recorded as not made (until then it may still be under way).
RESTART_OUTCOME_WAIT_S = 60.0
# Background restarts made at once; more wait for a slot (a host-wide incident restarts
# its containers a few at a time rather than all together).
PARALLEL_RESTARTS = 4
RESTART_FORBIDDEN_HINT = ("allow container restarts on the socket proxy (ALLOW_RESTARTS=1), "
                          "or set AEGIS_REMEDIATION=observe to record and escalate only")
# Restarts this process is making right now: (host, name) -> container id.
_in_flight: dict[tuple[str, str], str] = {}
_in_flight_changed = threading.Condition()
_slots = threading.BoundedSemaphore(PARALLEL_RESTARTS)


def in_progress(host: str, name: str) -> bool:
    """True while this process is restarting the container ``name`` of ``host``."""
    with _in_flight_changed:
        return (host, name) in _in_flight


def in_progress_id(container_id: str) -> bool:
    """True while this process is restarting the container with this (full) id."""
    with _in_flight_changed:
        return bool(container_id) and container_id in _in_flight.values()


def wait_idle(timeout_s: float) -> bool:
    """Wait until no restart is under way in this process; False on timeout."""
    deadline = time.monotonic() + timeout_s
    with _in_flight_changed:
        while _in_flight:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return False
            _in_flight_changed.wait(left_s)
    return True


def _begin(key: tuple[str, str], container_id: str) -> None:
    with _in_flight_changed:
        _in_flight[key] = container_id


def _end(key: tuple[str, str]) -> None:
    with _in_flight_changed:
        _in_flight.pop(key, None)
        _in_flight_changed.notify_all()


def restart(sv: Supervisor, decision: Decision, seen: Seen, policy: Policy,
            now: datetime) -> None:
    """Strike 2, already decided and saved: restart now, in this thread."""
    key = (sv.host, seen.name)
    _begin(key, seen.id)
    try:
        _restart(sv, decision, seen, policy, now)
    finally:
        _end(key)


def restart_in_background(sv: Supervisor, client_factory: Callable[[], Any],
                          decision: Decision, seen: Seen, policy: Policy,
                          now: datetime) -> None:
    """Strike 2, already decided and saved: restart in a thread of its own, through a
    Docker client of its own (the caller's may be closed when its stream breaks)."""
    key = (sv.host, seen.name)
    _begin(key, seen.id)  # before the thread starts: never judged or completed meanwhile
    thread = threading.Thread(
        target=_restart_in_thread, args=(sv, client_factory, decision, seen, policy, now),
        name=f"aegis-restart-{seen.name}", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: restart here rather than not at all
        restart(sv, decision, seen, policy, now)


def _restart_in_thread(sv: Supervisor, client_factory: Callable[[], Any],
                       decision: Decision, seen: Seen, policy: Policy,
                       now: datetime) -> None:
    key = (sv.host, seen.name)
    try:
        with _slots:
            client = client_factory()
            try:
                _restart(sv.with_client(client), decision, seen, policy, now)
            finally:
                client.close()
    except Exception as exc:  # recorded in the log; the sweep completes what it can
        get_logger().error("container_restart_crashed", container=seen.name,
                           host=sv.host, error=str(exc), exc_info=True)
    finally:
        _end(key)


def _restart(sv: Supervisor, decision: Decision, seen: Seen, policy: Policy,
             now: datetime) -> None:
    """Ask Docker, record the outcome, then restart the containers sharing its network
    namespace."""
    seen = sv.inspected(seen)
    timeout_s = (L.parse_labels(seen.labels).stop_timeout_s or seen.stop_timeout_s
                 or policy.stop_timeout_s)
    details = sv.details(seen, decision, probe_output=seen.probe_output,
                         probe_exit_code=seen.probe_exit_code,
                         restarts_last_hour=len(decision.state.restarts),
                         docker_restart_count=seen.docker_restart_count,
                         stop_timeout_s=timeout_s)
    sv.log.warning("container_restarting", container=seen.name, strike=2,
                   stop_timeout_s=timeout_s)
    try:
        sv.client.api.restart(seen.id, timeout=int(timeout_s))
    except docker_errors() as exc:
        if forbidden(exc):  # a proxy's allow-list: every restart will fail until it changes
            sv.log.error("container_restart_forbidden", container=seen.name,
                         docker_host=docker_endpoint(), hint=RESTART_FORBIDDEN_HINT)
        sv.app.store.record_event(
            "container_restart_failed", f"{seen.name}: restart failed: {exc}",
            importance="high", source="supervisor", timestamp=now,
            details={**details, "error": str(exc)})
        return
    sv.app.store.record_event(
        "container_restarted",
        f"{seen.name} restarted (strike 2 of 3): still unhealthy; "
        f"restart {len(decision.state.restarts)} this hour",
        importance="high", source="supervisor", timestamp=now, details=details)
    restart_dependents(sv, seen, now)


def complete_restarts(sv: Supervisor, now: datetime) -> int:
    """Record the outcome of restarts a daemon decided and saved but stopped (killed)
    before recording: ``container_restarted`` when Docker started the container since
    the decision, ``container_restart_failed`` when it has not a while later. Never
    restarts anything itself. Returns how many were recorded."""
    recorded = 0
    for row in sv.app.db.fetch_all("containers_restart_unrecorded", host=sv.host):
        if in_progress(sv.host, row["name"]):
            continue  # this process is making it right now
        try:
            attrs = sv.client.api.inspect_container(row["container_id"] or row["name"])
        except docker_errors():
            continue
        started = docker_time(str((attrs.get("State") or {}).get("StartedAt") or ""))
        decided = row["restart_at"]
        details = {"container": row["name"], "host": sv.host,
                   "container_id": (row["container_id"] or "")[:12], "image": row["image"],
                   "incident": row["incident"], "strikes": row["strikes"],
                   "restarts_last_hour": len(row["restarts"] or []),
                   "reason": row["last_reason"], "recorded_late": True}
        if started is not None and started >= decided:
            sv.app.store.record_event(
                "container_restarted", f"{row['name']} restarted (strike 2 of 3); "
                "recorded late: the daemon stopped during the restart",
                importance="high", source="supervisor", timestamp=decided,
                details=details)
        elif (now - decided).total_seconds() > RESTART_OUTCOME_WAIT_S:
            sv.app.store.record_event(
                "container_restart_failed", f"{row['name']}: restart not made: the "
                "daemon stopped between deciding it and asking Docker",
                importance="high", source="supervisor", timestamp=decided,
                details={**details, "error": "the daemon stopped before the restart"})
        else:
            continue  # Docker may still be stopping it: the next sweep or start decides
        recorded += 1
    return recorded


def restart_dependents(sv: Supervisor, seen: Seen, now: datetime) -> None:
    """Restart, after ``seen``, the running containers that use its network namespace,
    except those aegis may not restart (protected, opted out, out of scope, in
    maintenance): they are left alone and ``container_dependent_skipped`` says why."""
    modes = {f"container:{seen.id}", f"container:{seen.name}"}
    try:
        entries = sv.client.api.containers(filters={"status": "running"})
    except docker_errors():
        return
    for entry in entries:
        dependent = seen_from_listing(entry)
        if dependent.network_mode not in modes:
            continue
        parsed = L.parse_labels(dependent.labels)
        details = {"container": dependent.name, "host": sv.host,
                   "container_id": dependent.id[:12], "image": dependent.image,
                   "network_of": seen.name,
                   "reason": f"shares the network namespace of {seen.name}"}
        refusal = sv.restart_refusal(dependent, parsed, now)
        if refusal is not None:
            sv.app.store.record_event(
                "container_dependent_skipped",
                f"{dependent.name} shares {seen.name}'s network but is {refusal}: "
                "not restarted", importance="high", source="supervisor", timestamp=now,
                details={**details, "skipped_because": refusal})
            continue
        try:
            sv.client.api.restart(dependent.id, timeout=int(
                parsed.stop_timeout_s or DEFAULT_STOP_TIMEOUT_S))
        except docker_errors() as exc:
            sv.log.error("container_dependent_restart_failed", container=dependent.name,
                         error=str(exc))
            continue
        sv.app.store.record_event(
            "container_restarted",
            f"{dependent.name} restarted after {seen.name} (shared network namespace)",
            importance="high", source="supervisor", timestamp=now, details=details)
