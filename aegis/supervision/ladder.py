"""The healing ladder's rungs above a restart (``aegis.heal``), made once decided and
saved, like a restart: a recreate from the same image (a fresh writable layer), or a
restart of the container's whole compose project, stopped dependants first and started
in ``depends_on`` order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from aegis.core.logs import get_logger, secret_values
from aegis.storage.events import Event, EventType, Importance
from aegis.storage.outbox import IncidentStep
from aegis.storage.runtime import Runtime
from aegis.supervision.docker import (
    COMPOSE_PROJECT,
    Sighting,
    docker_errors,
    inspected,
    log_tail,
    sighting_from_listing,
)
from aegis.supervision.protocol.labels import effective_stop_timeout_s
from aegis.supervision.protocol.strikes import Decision
from aegis.supervision.records import SOURCE, details
from aegis.supervision.recreate import RecreateError, is_aside, recreate
from aegis.supervision.repository import LogLine

COMPOSE_ONEOFF = "com.docker.compose.oneoff"  # `docker compose run`: not part of the stack

# Records a step of a container's open incident (Restarter.record_step).
RecordStep = Callable[[Event, Sighting, int, LogLine], None]
# Why aegis may not act on a container it acts on only because of another, or None.
Refusal = Callable[[Sighting, datetime], str | None]


class Ladder:
    """Makes and records the recreates and stack restarts of one supervision."""

    def __init__(self, runtime: Runtime, record_step: RecordStep, refusal: Refusal) -> None:
        self.runtime = runtime
        self.record_step = record_step
        self.refusal = refusal
        self.host = runtime.settings.host
        self.log = get_logger().bind(host=self.host)

    def recreate(self, client: Any, decision: Decision, seen: Sighting, now: datetime) -> str:
        """Recreate ``seen`` and record it; returns the id of the container now under its
        name (the old one's after a failure, rolled back)."""
        seen = inspected(client, seen)
        timeout_s = effective_stop_timeout_s(seen, self.runtime.settings)
        carried = details(self.host, seen, decision, probe_output=seen.probe_output,
                          restarts_last_hour=len(decision.state.restarts),
                          stop_timeout_s=timeout_s)
        # read first: the old container's log goes with it
        tail = log_tail(client, seen, secret_values(self.runtime.settings))
        carried.update(tail.details())
        store, incident = self.runtime.store, decision.state.incident
        self.log.warning("container_recreating", container=seen.name, strike=2)
        try:
            done = recreate(client, seen.id, stop_timeout_s=timeout_s)
        except RecreateError as exc:
            event = store.new_event(
                EventType.CONTAINER_RECREATE_FAILED, f"{seen.name}: recreate failed: {exc}",
                importance=Importance.HIGH, source=SOURCE, timestamp=now,
                details={**carried, "error": str(exc), "step": exc.step,
                         "rolled_back": exc.rolled_back})
            self.record_step(event, seen, incident, LogLine(
                now, IncidentStep.RESTART_FAILED, f"recreate failed: {exc}",
                probe=seen.probe_output, log_tail=tail))
            return seen.id
        event = store.new_event(
            EventType.CONTAINER_RECREATED,
            f"{seen.name} recreated (strike 2 of 3): {decision.reason}",
            importance=Importance.HIGH, source=SOURCE, timestamp=now,
            details={**carried, "new_container_id": done.new_id[:12],
                     "anonymous_volumes": list(done.anonymous_volumes)})
        self.record_step(event, seen, incident, LogLine(
            now, IncidentStep.RECREATED, decision.reason, probe=seen.probe_output,
            log_tail=tail))
        return done.new_id

    def restart_stack(self, client: Any, decision: Decision, seen: Sighting,
                      now: datetime) -> None:
        """Restart ``seen``'s compose project: its containers stopped, dependants first,
        then started in ``depends_on`` order; members aegis may not act on (protected,
        opted out, in maintenance) are left as they are. Recorded as one step."""
        carried = details(self.host, seen, decision,
                          restarts_last_hour=len(decision.state.restarts))
        store, incident = self.runtime.store, decision.state.incident
        try:
            members = self._members(client, seen)
        except docker_errors() as exc:
            members, error = [], str(exc)
        else:
            error = "" if members else "it is not part of a compose project"
        skipped = {m.name: why for m in members if m.id != seen.id
                   and (why := self.refusal(m, now)) is not None}
        order = [m for m in dependency_order(members) if m.name not in skipped]
        if order:
            error = self._stop_then_start(client, order)
        names = [m.name for m in order]
        if error:
            event = store.new_event(
                EventType.CONTAINER_RESTART_FAILED,
                f"{seen.name}: restart of its compose stack failed: {error}",
                importance=Importance.HIGH, source=SOURCE, timestamp=now,
                details={**carried, "error": error, "order": names, "skipped": skipped})
            self.record_step(event, seen, incident, LogLine(
                now, IncidentStep.RESTART_FAILED, f"stack restart failed: {error}"))
            return
        event = store.new_event(
            EventType.CONTAINER_STACK_RESTARTED,
            f"{seen.name}: compose project {seen.compose_project} restarted "
            f"({', '.join(names)}): {decision.reason}",
            importance=Importance.HIGH, source=SOURCE, timestamp=now,
            details={**carried, "order": names, "skipped": skipped})
        self.record_step(event, seen, incident, LogLine(
            now, IncidentStep.STACK_RESTARTED, f"{decision.reason} (order: {', '.join(names)})"))

    @staticmethod
    def _members(client: Any, seen: Sighting) -> list[Sighting]:
        if not seen.compose_project:
            return []
        entries = client.api.containers(
            all=True, filters={"label": f"{COMPOSE_PROJECT}={seen.compose_project}"})
        return [member for member in map(sighting_from_listing, entries)
                if member.labels.get(COMPOSE_ONEOFF, "False") != "True"
                and not is_aside(member.name)]

    def _stop_then_start(self, client: Any, order: Sequence[Sighting]) -> str:
        """Stop the members, last in the order first, then start them in order; the
        error that stopped it ("" when none). What was stopped is started again anyway."""
        settings = self.runtime.settings
        stopped: list[Sighting] = []
        error = ""
        for member in reversed(order):
            if member.status not in ("running", "restarting"):
                continue
            try:
                client.api.stop(member.id, timeout=int(effective_stop_timeout_s(
                    inspected(client, member), settings)))
            except docker_errors() as exc:
                error = f"stopping {member.name}: {exc}"
                break
            stopped.append(member)
        for member in order:
            if error and member not in stopped:
                continue  # after a failed stop only what was stopped is started again
            try:
                client.api.start(member.id)
            except docker_errors() as exc:
                error = error or f"starting {member.name}: {exc}"
        self.log.info("compose_stack_restarted", order=[m.name for m in order],
                      error=error or None)
        return error


def dependency_order(members: Sequence[Sighting]) -> list[Sighting]:
    """``members`` of one compose project, each after the services it ``depends_on``
    (and after its network parent); among equals by name. A cycle is broken by name."""
    by_service: dict[str, list[Sighting]] = {}
    for member in members:
        by_service.setdefault(member.compose_service or member.name, []).append(member)
    placed: list[Sighting] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def place(service: str) -> None:
        if service in done or service in visiting or service not in by_service:
            return
        visiting.add(service)
        for member in by_service[service]:
            for needed in sorted(member.depends_on):
                place(needed)
        visiting.discard(service)
        done.add(service)
        placed.extend(sorted(by_service[service], key=lambda m: m.name))

    for service in sorted(by_service):
        place(service)
    return placed
