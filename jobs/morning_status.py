"""morning_status: yesterday's runs and events, and the fleet after the night, to the
journal (06:00 in AEGIS_TIMEZONE)."""

from __future__ import annotations

from typing import Any

from aegis.notify.discord import DESCRIPTION_MAX
from aegis.reports.digest import DAY, collect_status, local_day
from aegis.reports.markdown import render_status, trim
from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry
from aegis.storage.events import EventType, Importance
from aegis.storage.outbox import Channel, Notification


def morning_status(ctx: JobContext) -> dict[str, Any]:
    """Yesterday's runs and events, pending tasks, open escalations, containers in
    maintenance and each host's health, to episodic memory and the journal channel."""
    zone = ctx.settings.zone
    day = local_day(ctx.scheduled_for, zone) - DAY
    status = collect_status(ctx.app, day, ctx.now)
    details = status.details()
    runs_ok = sum(job.ok for job in status.jobs)
    runs_failed = sum(job.failed + job.timeout for job in status.jobs)
    summary = (f"status {day.isoformat()}: {runs_ok} runs ok, {runs_failed} failed, "
               f"{details['events']} events; {status.pending_tasks} tasks pending, "
               f"{len(status.open_escalations)} open escalations")
    ctx.store.record_event(
        EventType.MORNING_STATUS, summary, importance=Importance.MEDIUM, source="morning_status",
        details=details,
        notify=Notification(channel=Channel.JOURNAL,
                            title=f"aegis morning status {local_day(ctx.now, zone)}",
                            body=trim(render_status(status), DESCRIPTION_MAX),
                            dedup_key=f"morning_status:{day.isoformat()}"))
    ctx.log.info("morning_status_generated", pending_tasks=status.pending_tasks,
                 open_escalations=len(status.open_escalations), date=day.isoformat())
    return details


def register(registry: Registry) -> None:
    registry.add("morning_status", morning_status, triggers.daily("06:00"), scope="cluster",
                 misfire_grace_s=3 * 3600, timeout_s=300, max_runtime_s=120,
                 expect_every_s=24.5 * 3600)
