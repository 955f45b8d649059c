"""aegis's scheduler and jobs driven in the test process: a job function called directly
with the context the scheduler would hand it, and a scheduler's runs waited for before a
test moves its clock on."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from aegis import api
from aegis.scheduling.registry import JobContext
from aegis.scheduling.repository import RunTrigger
from aegis.scheduling.scheduler import Scheduler


# what a JobContext holds, the log and the cancel flag optional
def job_context(app: api.Aegis, job_id: str, scheduled_for: datetime,  # noqa: PLR0913
                now: datetime, log: Any = None, cancelled: threading.Event | None = None,
                **args: Any) -> JobContext:
    """What the scheduler hands ``job_id``'s function for its slot ``scheduled_for`` at
    ``now`` (no run row: run_id None), logging to ``log`` (structlog's by default)."""
    if log is None:
        import structlog

        log = structlog.get_logger()
    return JobContext(job_id=job_id, run_id=None, trigger=RunTrigger.SCHEDULE,
                      scheduled_for=scheduled_for, now=now, app=app, log=log,
                      cancelled=cancelled or threading.Event(), args=args)


def wait_runs(scheduler: Scheduler) -> None:
    """Until every run ``scheduler`` has in flight is done (10 s each at most)."""
    for execution in scheduler.runner.in_flight():
        assert execution.done is not None
        assert execution.done.wait(10), f"{execution.job.id} did not finish"
