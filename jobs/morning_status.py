"""morning_status: yesterday's runs and events, and the fleet now, to the journal (06:00 UTC)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from aegis import triggers
from aegis.digest import DAY, collect_status, render_status, trim
from aegis.outbox import Notification
from aegis.registry import JobContext, Registry

DISCORD_DESCRIPTION_CHARS = 4096


def morning_status(ctx: JobContext) -> dict[str, Any]:
    """Yesterday's runs and events, pending tasks, open escalations, containers in
    maintenance and each host's health, to episodic memory and the journal channel."""
    day = ctx.scheduled_for.astimezone(UTC).date() - DAY
    status = collect_status(ctx.app.db, day, ctx.now, ctx.settings.heartbeat_interval_s)
    details = status.details()
    runs_ok = sum(job.ok for job in status.jobs)
    runs_failed = sum(job.failed + job.timeout for job in status.jobs)
    summary = (f"status {day.isoformat()}: {runs_ok} runs ok, {runs_failed} failed, "
               f"{details['events']} events; {status.pending_tasks} tasks pending, "
               f"{len(status.open_escalations)} open escalations")
    ctx.store.record_event(
        "morning_status", summary, importance="medium", source="morning_status",
        details=details,
        notify=Notification(channel="journal", title=f"aegis morning status {ctx.now:%Y-%m-%d}",
                            body=trim(render_status(status), DISCORD_DESCRIPTION_CHARS),
                            dedup_key=f"morning_status:{day.isoformat()}"))
    ctx.log.info("morning_status_generated", pending_tasks=status.pending_tasks,
                 open_escalations=len(status.open_escalations), date=day.isoformat())
    return details


def register(registry: Registry) -> None:
    registry.add("morning_status", morning_status, triggers.daily("06:00"), scope="cluster",
                 misfire_grace_s=3 * 3600, timeout_s=300)
