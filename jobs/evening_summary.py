"""evening_summary: the day's digest into the journal folder, memory and channel (22:00 in
AEGIS_TIMEZONE). With AEGIS_DIGEST_SCOPE=host (the default) every daemon runs it for its own
host; with fleet it is a cluster job: one digest of every host, written once."""

from __future__ import annotations

from datetime import date
from typing import Any

from aegis.notify.discord import DESCRIPTION_MAX
from aegis.reports.digest import collect_day, local_day, parse_day, scope_host
from aegis.reports.journal import write_day
from aegis.reports.markdown import render_day, trim
from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry
from aegis.storage.events import EventType, Importance
from aegis.storage.outbox import Channel, Notification


def digest_day(ctx: JobContext) -> date:
    """The day (of AEGIS_TIMEZONE) a run reports on: ``--arg date=YYYY-MM-DD``, else its
    slot's day (so a 22:00 slot caught up after midnight still reports on its own day)."""
    zone = ctx.settings.zone
    if ctx.args.get("date"):
        return parse_day(str(ctx.args["date"]), today=local_day(ctx.now, zone))
    return local_day(ctx.scheduled_for, zone)


def evening_summary(ctx: JobContext) -> dict[str, Any]:
    """Write the day's digest to AEGIS_JOURNAL_DIR/YYYY-MM-DD.md and send it to the
    journal channel."""
    day = digest_day(ctx)
    host = scope_host(ctx.settings)
    digest = collect_day(ctx.app, day, host)
    text = render_day(digest)
    details = digest.details()
    journal_error: OSError | None = None
    try:
        details["path"] = str(write_day(ctx.settings.journal_dir, day, text))
    except OSError as exc:
        journal_error = exc
        details["path"] = None
        details["journal_error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
        ctx.log.error("journal_write_failed", date=day.isoformat(),
                      error=details["journal_error"])
    summary = (f"digest {day.isoformat()}: {digest.runs_completed} runs completed, "
               f"{digest.runs_failed} failed, {digest.pending_tasks} tasks pending; "
               f"{digest.events_total} events ({digest.events_critical} critical); "
               f"{len(digest.open_escalations)} open escalations")
    ctx.store.record_event(
        EventType.EVENING_SUMMARY, summary, importance=Importance.MEDIUM, source="evening_summary",
        details=details,
        notify=Notification(channel=Channel.JOURNAL,
                            title=f"aegis digest {day.isoformat()}"
                                  + (f" ({host})" if host else ""),
                            body=trim(text, DESCRIPTION_MAX),
                            dedup_key=f"evening_summary:{day.isoformat()}"
                                      + (f":{host}" if host else "")))
    ctx.log.info("evening_summary_generated", tasks_completed=digest.runs_completed,
                 events=digest.events_total, date=day.isoformat(), path=details["path"])
    if journal_error is not None:
        # Recorded and sent; failing the run makes the missing file visible in job_runs.
        raise journal_error
    return details


def register(registry: Registry) -> None:
    # Silent (a critical alert) when the day's digest has not succeeded by 22:30.
    registry.add("evening_summary", evening_summary, triggers.daily("22:00"),
                 scope="host" if scope_host(registry.settings) else "cluster",
                 misfire_grace_s=6 * 3600, timeout_s=600, max_runtime_s=300,
                 expect_every_s=24.5 * 3600)
