"""A failing label job's living message: its first failure posts one message on the
alerts channel, each later failure edits it (with the count and the latest output), and
its first success afterwards edits it to say it recovered. A failure after that is a new
message. Which jobs are failing is known to the daemon that runs them (kept in memory: a
daemon restarted during a streak starts a new message)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from aegis.notify.messages import escape_markdown
from aegis.storage.events import EventType, Importance
from aegis.storage.outbox import Channel, IncidentStep, Notification
from aegis.storage.runtime import Runtime

# the output's last characters shown in a message and an event
SHOWN_OUTPUT_CHARS = 1500


@dataclass(frozen=True)
class Streak:
    """A job failing since ``since``: its message's thread and how many runs failed."""

    thread: str
    since: datetime
    failures: int


@dataclass(frozen=True)
class Failure:
    """One failed run of a label job, as its message tells it."""

    job_id: str
    container: str
    reason: str
    output: str = ""
    run_id: int | None = None


class FailureAlerts:
    def __init__(self) -> None:
        self._streaks: dict[str, Streak] = {}
        self._lock = threading.Lock()

    def failing(self, job_id: str) -> Streak | None:
        with self._lock:
            return self._streaks.get(job_id)

    def failed(self, runtime: Runtime, failure: Failure, now: datetime) -> None:
        job_id, container, reason = failure.job_id, failure.container, failure.reason
        run_id = failure.run_id
        with self._lock:
            streak = self._streaks.get(job_id)
            streak = Streak(f"label_job:{job_id}:{now.isoformat()}", now, 1) if streak is None \
                else Streak(streak.thread, streak.since, streak.failures + 1)
            self._streaks[job_id] = streak
        shown = failure.output[-SHOWN_OUTPUT_CHARS:]
        fence = "```"
        block = f"\n{fence}\n{shown.replace(fence, chr(39) * 3)}\n{fence}" if shown else ""
        times = "once" if streak.failures == 1 else f"{streak.failures} times in a row"
        body = (f"Job `{escape_markdown(job_id)}` in container {escape_markdown(container)} "
                f"failed {times}: {escape_markdown(reason)}."
                + block
                + f"\n`aegis jobs history {job_id}` shows its runs.")
        runtime.store.record_event(
            EventType.LABEL_JOB_FAILED, f"label job {job_id} failed: {reason}",
            importance=Importance.HIGH, source="label_jobs",
            details={"job": job_id, "container": container, "reason": reason,
                     "output": shown, "failures": streak.failures, "run_id": run_id},
            notify=Notification(
                channel=Channel.ALERTS, title=f"job {job_id} is failing", body=body,
                importance=Importance.HIGH, fields={"job": job_id, "container": container},
                dedup_key=f"label_job_failed:{job_id}:{run_id or now.isoformat()}",
                groupable=False, thread=streak.thread, state=IncidentStep.ESCALATED,
                edit_only=streak.failures > 1))

    def succeeded(self, runtime: Runtime, job_id: str, *, container: str,
                  now: datetime) -> None:
        with self._lock:
            streak = self._streaks.pop(job_id, None)
        if streak is None:
            return
        runtime.store.record_event(
            EventType.LABEL_JOB_RECOVERED, f"label job {job_id} succeeded again after "
            f"{streak.failures} failed run(s)", importance=Importance.MEDIUM,
            source="label_jobs",
            details={"job": job_id, "container": container, "failures": streak.failures,
                     "failing_since": streak.since.isoformat()},
            notify=Notification(
                channel=Channel.ALERTS, title=f"job {job_id} recovered",
                body=f"Job `{escape_markdown(job_id)}` in container "
                     f"{escape_markdown(container)} succeeded again after "
                     f"{streak.failures} failed run(s).",
                importance=Importance.MEDIUM, fields={"job": job_id, "container": container},
                dedup_key=f"label_job_recovered:{job_id}:{now.isoformat()}",
                groupable=False, thread=streak.thread, state=IncidentStep.RECOVERED))
