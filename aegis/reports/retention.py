"""Retention: deleting old rows in short batches so no lock is held for long.

Each batch is one statement in its own transaction on an autocommit connection; between
batches the caller may stop (the daemon shutting down). Only low-importance events are
ever deleted; medium, high and critical events are kept for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aegis.core.jsonable import to_json
from aegis.scheduling.repository import Runs
from aegis.storage.outbox import Outbox
from aegis.storage.rows import PrunedBatch
from aegis.storage.runtime import Runtime
from aegis.supervision.escalation import EscalationPages
from aegis.supervision.repository import Containers

DEFAULT_BATCH_ROWS = 10_000
# A job run may be referenced by a task (ON DELETE SET NULL), so its batches stay smaller.
JOB_RUNS_BATCH_ROWS = 2_000
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)

# One batch of a table's cleanup: (cutoff, from_time, batch_rows) -> deleted, last_time.
Batch = Callable[[datetime, datetime, int], PrunedBatch]  # a table owner's cleanup batch


@dataclass(frozen=True)
class Cutoffs:
    """Rows strictly older than these instants are past their retention."""

    events: datetime
    job_runs: datetime
    outbox: datetime
    containers: datetime  # rows of containers removed from Docker before this


def retention_cutoffs(now: datetime, *, event_retention_s: float, job_runs_retention_s: float,
                      outbox_retention_s: float, container_retention_s: float) -> Cutoffs:
    if now.tzinfo is None:
        raise ValueError("retention needs a timezone-aware now")
    return Cutoffs(events=now - timedelta(seconds=event_retention_s),
                   job_runs=now - timedelta(seconds=job_runs_retention_s),
                   outbox=now - timedelta(seconds=outbox_retention_s),
                   containers=now - timedelta(seconds=container_retention_s))


@dataclass(frozen=True)
class Pruned:
    """What one table's pruning did."""

    table: str
    rows: int
    batches: int
    seconds: float
    longest_batch_s: float
    complete: bool  # False when stopped before the last batch

    def to_json(self) -> dict[str, Any]:
        return {**to_json(self, omit=("table",)), "seconds": round(self.seconds, 3),
                "longest_batch_s": round(self.longest_batch_s, 3)}


def prune(table: str, batch: Batch, cutoff: datetime, *,
          batch_rows: int = DEFAULT_BATCH_ROWS,
          should_stop: Callable[[], bool] = lambda: False) -> Pruned:
    """Run ``batch`` (one table owner's cleanup batch) until it deletes nothing more (or
    ``should_stop``)."""
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    started = time.monotonic()
    rows = batches = 0
    longest_s = 0.0
    from_time = _BEGINNING
    while True:
        if should_stop():
            return Pruned(table, rows, batches, time.monotonic() - started, longest_s, False)
        batch_started = time.monotonic()
        done = batch(cutoff, from_time, batch_rows)
        longest_s = max(longest_s, time.monotonic() - batch_started)
        batches += 1
        if done.last_time is None:
            return Pruned(table, rows, batches, time.monotonic() - started, longest_s, True)
        rows += done.deleted
        from_time = done.last_time


def prune_all(runtime: Runtime, cutoffs: Cutoffs, *, batch_rows: int = DEFAULT_BATCH_ROWS,
              should_stop: Callable[[], bool] = lambda: False) -> list[Pruned]:
    """Low events, finished job runs, finished notifications, the rows of removed
    containers and the escalation pages of incidents over, past their retention."""
    db = runtime.db
    return [
        prune("episodic_memory", runtime.store.prune_low_events, cutoffs.events,
              batch_rows=batch_rows, should_stop=should_stop),
        prune("job_runs", Runs(db).prune, cutoffs.job_runs,
              batch_rows=min(batch_rows, JOB_RUNS_BATCH_ROWS), should_stop=should_stop),
        prune("outbox", Outbox(db).prune, cutoffs.outbox,
              batch_rows=batch_rows, should_stop=should_stop),
        prune("containers", Containers(db).prune, cutoffs.containers,
              batch_rows=batch_rows, should_stop=should_stop),
        prune("escalation_pages", EscalationPages(db).prune, cutoffs.containers,
              batch_rows=batch_rows, should_stop=should_stop),
    ]
