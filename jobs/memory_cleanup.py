"""memory_cleanup: retention of events, job runs, finished notifications and the rows of
removed containers (00:30 in AEGIS_TIMEZONE)."""

from __future__ import annotations

from typing import Any

from aegis.reports.retention import prune_all, retention_cutoffs
from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry
from aegis.storage.events import EventType, Importance


def memory_cleanup(ctx: JobContext) -> dict[str, Any]:
    """Delete low-importance events, finished job runs, finished notifications and the
    rows of long-removed containers past their retention, in short batches; medium, high
    and critical events are never deleted."""
    settings = ctx.settings
    cutoffs = retention_cutoffs(ctx.now, event_retention_s=settings.event_retention_s,
                                job_runs_retention_s=settings.job_runs_retention_s,
                                outbox_retention_s=settings.outbox_retention_s,
                                container_retention_s=settings.container_retention_s)
    pruned = {p.table: p for p in prune_all(ctx.app, cutoffs,
                                            should_stop=ctx.cancelled.is_set)}
    events, runs, outbox, containers = (pruned["episodic_memory"], pruned["job_runs"],
                                        pruned["outbox"], pruned["containers"])
    seconds = sum(p.seconds for p in pruned.values())
    details: dict[str, Any] = {
        "events_deleted": events.rows,
        "job_runs_deleted": runs.rows,
        "outbox_deleted": outbox.rows,
        "containers_deleted": containers.rows,
        "rows_deleted": sum(p.rows for p in pruned.values()),
        "seconds": round(seconds, 3),
        "longest_batch_s": round(max(p.longest_batch_s for p in pruned.values()), 3),
        "complete": all(p.complete for p in pruned.values()),
        "cutoffs": {"events": cutoffs.events.isoformat(),
                    "job_runs": cutoffs.job_runs.isoformat(),
                    "outbox": cutoffs.outbox.isoformat(),
                    "containers": cutoffs.containers.isoformat()},
        "tables": {table: p.to_json() for table, p in pruned.items()},
    }
    summary = (f"deleted {events.rows} low events, {runs.rows} job runs, {outbox.rows} "
               f"finished notifications and {containers.rows} removed containers "
               f"in {seconds:.1f}s"
               + ("" if details["complete"] else " (stopped early; the rest goes next run)"))
    ctx.store.record_event(EventType.MEMORY_CLEANUP, summary, importance=Importance.MEDIUM,
                           source="memory_cleanup", details=details)
    ctx.log.info("memory_cleanup_complete", events_deleted=events.rows,
                 job_runs_deleted=runs.rows, outbox_deleted=outbox.rows,
                 containers_deleted=containers.rows,
                 seconds=round(seconds, 3), complete=details["complete"])
    return details


def register(registry: Registry) -> None:
    registry.add("memory_cleanup", memory_cleanup, triggers.daily("00:30"), scope="cluster",
                 misfire_grace_s=12 * 3600, timeout_s=3600, max_runtime_s=1800,
                 expect_every_s=25 * 3600)
