"""The fleet: every host sharing the database as the others see it, and who has gone
silent. ``aegis hosts`` lists it; the ``peer_watch`` job alerts on silences.

Every daemon heartbeats into ``daemons``; a host whose latest daemon stopped cleanly is
``stopped``, one whose heartbeat is a few intervals old is ``stale``, and one with no
heartbeat for AEGIS_PEER_TIMEOUT and no clean stop is ``silent``: nothing watches its
containers, and only its peers can say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aegis.core.jsonable import to_json
from aegis.scheduling.heartbeat import DaemonStatus, peer_status
from aegis.scheduling.repository import Runs
from aegis.storage.runtime import Runtime
from aegis.supervision.repository import Containers, HostContainers

SILENCE_KEY = "peer_silent:"  # state key of a host's silence already reported


@dataclass(frozen=True)
class HostView:
    host: str
    status: DaemonStatus
    last_heartbeat_at: datetime
    heartbeat_age_s: float
    version: str
    instance_id: str
    supervised: int
    unhealthy: int
    in_incident: int  # containers in an incident, dependants folded into one included
    incidents: int  # open incidents: a parent and its folded dependants are one
    last_escalation_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


def collect_hosts(runtime: Runtime, now: datetime) -> list[HostView]:
    """Every host with a daemon row, from its latest daemon, in name order."""
    settings = runtime.settings
    containers = Containers(runtime.db).per_host()
    escalations = runtime.store.last_escalations()
    hosts = []
    for daemon in Runs(runtime.db).daemons():
        counts = containers.get(daemon.host, HostContainers())
        hosts.append(HostView(
            host=daemon.host,
            status=peer_status(daemon.status, daemon.last_heartbeat_at, now,
                               settings.heartbeat_interval_s, settings.peer_timeout_s),
            last_heartbeat_at=daemon.last_heartbeat_at,
            heartbeat_age_s=round((now - daemon.last_heartbeat_at).total_seconds(), 1),
            version=daemon.version, instance_id=daemon.instance_id,
            supervised=counts.supervised, unhealthy=counts.unhealthy,
            in_incident=counts.in_incident, incidents=counts.incidents,
            last_escalation_at=escalations.get(daemon.host)))
    return sorted(hosts, key=lambda view: view.host)


@dataclass(frozen=True)
class Silences:
    """What one look at the fleet changes: hosts newly silent, hosts back."""

    new: tuple[HostView, ...]
    resumed: tuple[HostView, ...]


def silences(hosts: list[HostView], reported: set[str]) -> Silences:
    """Against the hosts whose silence was already reported: the newly silent ones, and
    the reported ones that heartbeat again (or stopped cleanly since, or are gone)."""
    silent = {view.host for view in hosts if view.status == DaemonStatus.SILENT}
    return Silences(
        new=tuple(view for view in hosts if view.host in silent - reported),
        resumed=tuple(view for view in hosts
                      if view.host in reported and view.host not in silent))


def forget(runtime: Runtime, host: str) -> int:
    """Take ``host`` out of the fleet on purpose: no more silence, no alert; returns how
    many daemon rows went (0: no such host)."""
    removed = Runs(runtime.db).forget_host(host)
    if runtime.store.get_state(SILENCE_KEY + host):
        runtime.store.set_state(SILENCE_KEY + host, None)
    return removed
