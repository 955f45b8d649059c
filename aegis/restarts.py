"""Restarting containers: the restart itself (strike 2), the containers that share its
network namespace, and the outcome of restarts a daemon decided and saved but was killed
before recording (completed from Docker's ``StartedAt``, never made again).
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from aegis import labels as L
from aegis.engine import DEFAULT_STOP_TIMEOUT_S, Seen, docker_errors, seen_from_listing
from aegis.strikes import Decision, Policy

if TYPE_CHECKING:
    from aegis.supervisor import Supervisor

# A restart decided by a daemon that stopped before recording it, and not made by Docker
# this long after, is recorded as not made (until then it may still be under way).
RESTART_OUTCOME_WAIT_S = 60.0
# Restarts this process is making right now, by (host, name): never completed by a sweep.
_restarting: set[tuple[str, str]] = set()
_restarting_lock = threading.Lock()


def restart(sv: Supervisor, decision: Decision, seen: Seen, policy: Policy,
            now: datetime) -> None:
    """Strike 2, already decided and saved: ask Docker, record the outcome, then restart
    the containers sharing its network namespace."""
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
    key = (sv.host, seen.name)
    with _restarting_lock:
        _restarting.add(key)
    try:
        try:
            sv.client.api.restart(seen.id, timeout=int(timeout_s))
        except docker_errors() as exc:
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
    finally:
        with _restarting_lock:
            _restarting.discard(key)
    restart_dependents(sv, seen, now)


def complete_restarts(sv: Supervisor, now: datetime) -> int:
    """Record the outcome of restarts a daemon decided and saved but stopped (killed)
    before recording: ``container_restarted`` when Docker started the container since
    the decision, ``container_restart_failed`` when it has not a while later. Never
    restarts anything itself. Returns how many were recorded."""
    recorded = 0
    for row in sv.app.db.fetch_all("containers_restart_unrecorded", host=sv.host):
        with _restarting_lock:
            if (sv.host, row["name"]) in _restarting:
                continue  # this process is making it right now
        try:
            attrs = sv.client.api.inspect_container(row["container_id"] or row["name"])
        except docker_errors():
            continue
        started = _docker_time(str((attrs.get("State") or {}).get("StartedAt") or ""))
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
    """Restart, after ``seen``, the running containers that use its network namespace."""
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
        if parsed.protect or sv.is_own(dependent) or \
                dependent.name in sv.settings.protected_containers:
            sv.app.store.record_event(
                "container_dependent_skipped",
                f"{dependent.name} shares {seen.name}'s network but is protected: "
                "not restarted", importance="high", source="supervisor", details=details)
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


def _docker_time(text: str) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which ``fromisoformat`` does not take."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match or text.startswith("0001-"):
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone)
