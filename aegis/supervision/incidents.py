"""What an incident records: the event (and the alert, if any) of a strike 1, an
escalation, a recovery or a reset, with what an operator needs to act on it: the last
probe output, exit code, restart policy and counts, the host."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aegis.notify.channels import escape_markdown
from aegis.storage.events import Event
from aegis.storage.outbox import Channel, Notification
from aegis.storage.store import Store
from aegis.supervision.docker import Seen, effective_stop_timeout_s
from aegis.supervision.strikes import Decision

Record = tuple[Event, Notification | None]  # an event to record, and its alert


def details(host: str, seen: Seen, decision: Decision, **extra: Any) -> dict[str, Any]:
    """The details every supervision event carries, plus ``extra``."""
    return {"container": seen.name, "host": host, "container_id": seen.id[:12],
            "image": seen.image, "compose_project": seen.compose_project,
            "compose_service": seen.compose_service, "incident": decision.state.incident,
            "strikes": decision.state.strikes, "reason": decision.reason, **extra}


def record(store: Store, host: str, decision: Decision, phase_before: str, seen: Seen,
           now: datetime) -> Record:
    """The event and alert of ``decision`` (not a restart: aegis/restarts.py records
    that once it is made). For an escalation, ``seen`` should come from an inspect."""
    name = seen.name
    if decision.action == "escalate":
        return _escalation(store, host, decision, seen, now)
    if decision.action == "strike1":
        return store.new_event(
            "container_unhealthy", f"{name} is unhealthy (strike 1 of 3)",
            importance="medium", source="supervisor", timestamp=now,
            details=details(host, seen, decision, status=seen.status)), None
    if decision.action == "recover":
        was_escalated = phase_before == "escalated"
        notify = None
        if was_escalated:
            notify = Notification(
                channel=Channel.ALERTS, title=f"{name} recovered on {host}",
                body=f"{escape_markdown(name)} has been healthy again ({decision.reason}); "
                     "strikes reset.",
                importance="medium", fields={"container": name, "host": host},
                dedup_key=f"recovery:{host}:{name}:{decision.state.incident}")
        return store.new_event(
            "container_recovered", f"{name} recovered: {decision.reason}",
            importance="medium", source="supervisor", timestamp=now,
            details=details(host, seen, decision, was_escalated=was_escalated)), notify
    return store.new_event(
        "container_strikes_reset", f"{name}: strikes reset ({decision.reason})",
        importance="low", source="supervisor", timestamp=now,
        details=details(host, seen, decision)), None


def _escalation(store: Store, host: str, decision: Decision, seen: Seen,
                now: datetime) -> Record:
    name = seen.name
    incident = decision.state.incident
    # outside text, shown as written: a probe's `**` or <@123> formats and pings nothing
    probe = (f"\nLast health probe: {escape_markdown(seen.probe_output)}"
             if seen.probe_output else "")
    stop_timeout_s = effective_stop_timeout_s(seen)
    carried = details(host, seen, decision, probe_output=seen.probe_output,
                      probe_exit_code=seen.probe_exit_code, exit_code=seen.exit_code,
                      status=seen.status, restarts_last_hour=len(decision.state.restarts),
                      docker_restart_count=seen.docker_restart_count,
                      restart_policy=seen.restart_policy, stop_timeout_s=stop_timeout_s)
    if seen.details.get("error"):
        carried["docker_error"] = seen.details["error"]
    notify = Notification(
        channel=Channel.ALERTS, title=f"{name} escalated on {host}",
        body=f"{decision.reason}.{probe}\naegis takes no further action until "
             f"`aegis ack {name}` or the container is healthy again.",
        importance="critical",
        fields={"container": name, "host": host, "image": seen.image,
                "restarts_last_hour": str(len(decision.state.restarts))},
        dedup_key=f"escalation:{host}:{name}:{incident}")
    return store.new_event(
        "container_escalated", f"{name} escalated (strike 3 of 3): {decision.reason}",
        importance="critical", source="supervisor", timestamp=now, details=carried), notify
