"""Observe: what aegis reads of one container before the protocol decides. The sighting
(completed by an inspect when a step of an incident may be due, since a listing or an
event tells no restart policy and no probe), its labels and supervision mode, the
thresholds that apply to it, a stop a person asked for, the maintenance window under way,
and, from an inspect, triage's reading: a probe that cannot run or always times out, an
OOM kill.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aegis.core.config import Settings
from aegis.supervision.docker import Sighting, inspected, memory_usage
from aegis.supervision.protocol import triage, windows
from aegis.supervision.protocol.labels import (
    ContainerLabels,
    autoheal_label,
    effective_stop_timeout_s,
    has_aegis_label,
    parse_labels,
    strike_policy,
    supervision_mode,
)
from aegis.supervision.protocol.strikes import Observed, Phase, Policy, SupervisionMode
from aegis.supervision.protocol.windows import Span, Window
from aegis.supervision.repository import ContainerRow


@dataclass(frozen=True)
class Assessment:
    """One container as aegis reads it, ready for the protocol."""

    seen: Sighting
    labels: ContainerLabels
    autoheal: str | None  # the docker-autoheal label read, if any (AEGIS_AUTOHEAL_COMPAT)
    has_healthcheck: bool
    mode: SupervisionMode
    maintenance: bool
    policy: Policy
    stopped: bool  # a person or a tool asked Docker to stop it since it last started
    stop_requested_at: datetime | None
    # the maintenance window under way that covers it, with its occurrence
    window: tuple[Window, Span] | None = None


def needs_inspect(seen: Sighting, row: ContainerRow, now: datetime) -> bool:
    """Whether a listing's sighting must be completed by an inspect before deciding: an
    exited container whose crash may call for an escalation (a listing shows no restart
    policy, no OOM kill), one Docker is restarting (its restart count), and one whose next
    step in an incident is due (a restart or an escalation, never taken without triage)."""
    if seen.details:
        return False
    if seen.status == "exited":
        stopped, _ = row.stop_request(seen)
        return seen.exit_code != 0 and row.phase != Phase.ESCALATED and not stopped
    due = row.next_check_at is not None and row.next_check_at <= now
    return seen.status == "restarting" or (row.phase in (Phase.STRIKING, Phase.RESTARTING)
                                           and due)


def completed(client: Any, seen: Sighting, row: ContainerRow | None, now: datetime
              ) -> Sighting:
    """``seen``, completed by an inspect when ``needs_inspect`` says so."""
    if row is not None and needs_inspect(seen, row, now):
        return inspected(client, seen)
    return seen


def has_healthcheck(seen: Sighting, row: ContainerRow | None) -> bool:
    """Whether it has a health check: a listing of a stopped container cannot tell, and
    the row remembers."""
    if seen.has_healthcheck is not None:
        return seen.has_healthcheck
    return row is not None and row.has_healthcheck


def worth_a_row(settings: Settings, seen: Sighting, row: ContainerRow | None) -> bool:
    """Whether aegis keeps a row for a container it sees for the first time: one with a
    health check, or a label of aegis's (or docker-autoheal's) of any kind."""
    return has_healthcheck(seen, row) or has_aegis_label(seen.labels, autoheal_label(settings))


def assess(settings: Settings, seen: Sighting, row: ContainerRow, now: datetime,
           own_ids: Set[str]) -> Assessment:
    """``seen`` (with ``row``, what aegis remembers of it) read for the protocol: labels
    over settings."""
    autoheal = autoheal_label(settings)
    labels = parse_labels(seen.labels, autoheal)
    healthcheck = has_healthcheck(seen, row)
    mode = supervision_mode(settings, seen, labels, healthcheck, own_ids)
    maintenance = bool(labels.maintenance) or row.maintenance_requested(now)
    stopped, stop_requested_at = row.stop_request(seen)
    return Assessment(
        seen=seen, labels=labels, autoheal=autoheal, has_healthcheck=healthcheck, mode=mode,
        maintenance=maintenance,
        policy=strike_policy(settings, labels, mode, maintenance,
                             effective_stop_timeout_s(seen, settings)),
        stopped=stopped, stop_requested_at=stop_requested_at)


def covering_windows(seen: Sighting, labels: ContainerLabels, configured: Sequence[Window],
                     default_zone: ZoneInfo) -> list[Window]:
    """The maintenance windows that cover ``seen``: its label's and the configured ones
    that name it."""
    return windows.windows_of(seen, labels.maintenance_window, configured, default_zone)


def with_window(assessment: Assessment, configured: Sequence[Window], default_zone: ZoneInfo,
                now: datetime) -> Assessment:
    """``assessment`` in maintenance while a window covers the container (its policy holds
    the window's end: when to judge it afresh)."""
    under_way = windows.current(covering_windows(assessment.seen, assessment.labels,
                                                 configured, default_zone), now)
    if under_way is None:
        return assessment
    policy = replace(assessment.policy, maintenance=True, maintenance_until=under_way[1].end)
    return replace(assessment, maintenance=True, policy=policy, window=under_way)


def observed(client: Any, assessment: Assessment, row: ContainerRow,
             parent_incident: str | None, crash_exit_code: int | None) -> Observed:
    """What Docker reports, for the protocol, with triage's reading of an inspect and the
    parent whose incident this container depends on. ``crash_exit_code``: the exit code
    of its latest crash (a running container's inspect shows 0)."""
    seen = assessment.seen
    oom, problem, hung_timeout_s = False, None, None
    if seen.details:  # an inspect's
        peak = None
        if (seen.exit_code == triage.OOM_EXIT_CODE and seen.memory_limit
                and not seen.oom_killed):
            peak = memory_usage(client, seen).get("max_usage")
        oom = triage.oom_killed(seen, row.oom_at, peak)
        problem = triage.broken_probe(seen)
        hung_timeout_s = triage.hung_timeout_s(seen)
    return Observed(seen.status, seen.health,
                    seen.exit_code if seen.status != "running" else crash_exit_code,
                    seen.oom_killed, assessment.stopped, assessment.stop_requested_at,
                    seen.restart_policy, seen.docker_restart_count,
                    inspected=bool(seen.details), oom=oom, probe_problem=problem,
                    hung_timeout_s=hung_timeout_s, parent_incident=parent_incident)


def may_depend_on_another(seen: Sighting, row: ContainerRow) -> bool:
    """Whether ``seen`` may be folded into another container's incident: it depends on one
    (its network's owner, a compose service) and is unhealthy or in an incident."""
    return bool(seen.network_parent or seen.depends_on) and (
        seen.health == "unhealthy" or row.phase != Phase.OK)
