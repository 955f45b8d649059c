"""peer_watch: hosts watch each other. Every minute, once for the whole fleet, finds the
hosts whose daemon has gone silent (no heartbeat for AEGIS_PEER_TIMEOUT and no clean stop:
nothing watches their containers any more) and alerts once per silence; records when
they come back. With a single host there is nobody to watch."""

from __future__ import annotations

from typing import Any

from aegis.reports.fleet import SILENCE_KEY, HostView, collect_hosts, silences
from aegis.scheduling import triggers
from aegis.scheduling.heartbeat import DaemonStatus
from aegis.scheduling.registry import JobContext, Registry
from aegis.storage.events import EventType, Importance
from aegis.storage.outbox import Channel, Notification


def peer_watch(ctx: JobContext) -> dict[str, Any]:
    """Alert once when a host's daemon goes silent, and record when it is back."""
    hosts = collect_hosts(ctx.app, ctx.now)
    store = ctx.store
    reported = {view.host for view in hosts if store.get_state(SILENCE_KEY + view.host)}
    found = silences(hosts, reported)
    for view in found.new:
        silent_for = _minutes(view.heartbeat_age_s)
        store.record_event(
            EventType.PEER_SILENT, f"host {view.host} is silent: no heartbeat for {silent_for}",
            importance=Importance.CRITICAL, source="peer_watch", details=_details(view),
            notify=Notification(
                channel=Channel.ALERTS, title=f"aegis on {view.host} is silent",
                body=(f"No heartbeat from {view.host} since "
                      f"{view.last_heartbeat_at:%Y-%m-%d %H:%M:%S} UTC ({silent_for}), and "
                      f"no clean stop: its {view.supervised} supervised containers are not "
                      "watched. Check the host, or `aegis hosts forget "
                      f"{view.host}` if it was taken out of service."),
                importance=Importance.CRITICAL,
                fields={"host": view.host, "version": view.version,
                        "supervised": str(view.supervised)},
                dedup_key=f"peer_silent:{view.host}:{view.last_heartbeat_at.isoformat()}"))
        store.set_state(SILENCE_KEY + view.host,
                        {"since": view.last_heartbeat_at.isoformat(), "reported_by":
                         ctx.settings.host})
    for view in found.resumed:
        store.record_event(
            EventType.PEER_RESUMED, f"host {view.host} is back ({view.status})",
            importance=Importance.MEDIUM, source="peer_watch", details=_details(view),
            notify=Notification(channel=Channel.ALERTS, title=f"aegis on {view.host} is back",
                                body=f"{view.host} heartbeats again ({view.status}).",
                                importance=Importance.MEDIUM, fields={"host": view.host},
                                dedup_key=f"peer_resumed:{view.host}:"
                                          f"{view.last_heartbeat_at.isoformat()}"))
        store.set_state(SILENCE_KEY + view.host, None)
    return {"hosts": len(hosts),
            "silent": [v.host for v in hosts if v.status == DaemonStatus.SILENT],
            "new_silences": [v.host for v in found.new],
            "resumed": [v.host for v in found.resumed]}


def _details(view: HostView) -> dict[str, Any]:
    return {"host": view.host, "last_heartbeat_at": view.last_heartbeat_at.isoformat(),
            "heartbeat_age_s": view.heartbeat_age_s, "version": view.version,
            "instance_id": view.instance_id, "supervised_containers": view.supervised,
            "status": view.status.value}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def register(registry: Registry) -> None:
    registry.add("peer_watch", peer_watch, triggers.every(minutes=1), scope="cluster",
                 misfire_grace_s=60, timeout_s=50)
