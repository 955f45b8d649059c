"""The task queue: durable one-off work in the ``tasks`` table.

Rows come from ``aegis jobs run``, ``aegis tasks add``, the Python API or plain SQL
INSERTs; an insert trigger NOTIFYs ``aegis_tasks`` so a daemon wakes within a second.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aegis.db import Cursorish
from aegis.errors import StoreError, UsageError
from aegis.logs import get_logger
from aegis.runs import Execution, JobRun
from aegis.scheduler import Scheduler
from aegis.store import Event, Store, insert_event

TASK_CHANNEL = "aegis_tasks"
TASK_STATUSES = ("pending", "running", "done", "failed", "cancelled")
LISTEN_RETRY_S = 5.0


@dataclass(frozen=True)
class Task:
    id: int
    job_id: str
    args: dict[str, Any]
    status: str
    requested_by: str
    host: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_id: int | None
    error: str | None

    @property
    def slot(self) -> datetime:
        """The ``scheduled_for`` of this task's run: its creation time, made unique per task
        (rows inserted in one transaction share ``now()``) by adding its id in
        microseconds modulo a second; scheduler.sql's task queries use the same rule."""
        return self.created_at + timedelta(microseconds=self.id % 1_000_000)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("created_at", "started_at", "finished_at"):
            if data[name] is not None:
                data[name] = data[name].isoformat()
        return data


def add_task(db: Any, job_id: str, args: dict[str, Any] | None = None, *,
             requested_by: str = "cli", host: str | None = None) -> Task:
    row = db.fetch_one("add_task", job_id=job_id, args=dict(args or {}),
                       requested_by=requested_by, host=host)
    return Task.from_row(row)


def get_task(db: Any, task_id: int) -> Task:
    row = db.fetch_one("get_task", id=task_id)
    if row is None:
        raise UsageError(f"no task {task_id}")
    return Task.from_row(row)


def list_tasks(db: Any, status: str | None = None, limit: int = 50) -> list[Task]:
    return [Task.from_row(r) for r in db.fetch_all("list_tasks", status=status, limit=limit)]


def cancel_task(db: Any, task_id: int, now: datetime) -> Task | None:
    """Cancel a pending task; None when it exists but has already started."""
    get_task(db, task_id)
    row = db.fetch_one("cancel_task", id=task_id, now=now)
    return Task.from_row(row) if row else None


def wait_task(db: Any, task_id: int, timeout_s: float, poll_s: float = 0.2) -> Task:
    """Poll until the task is finished (or ``timeout_s`` passes); return its last state."""
    deadline = time.monotonic() + timeout_s
    while True:
        task = get_task(db, task_id)
        if task.status in ("done", "failed", "cancelled") or time.monotonic() >= deadline:
            return task
        time.sleep(poll_s)


class TaskQueue:
    """Claims pending tasks for a scheduler and closes them when their runs finish."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.log = get_logger()
        self._task_of_run: dict[int, int] = {}
        self._lock = threading.Lock()
        scheduler.add_finish_hook(self._on_finish)

    def claim_pending(self) -> int:
        """Start every pending task this daemon may run; return how many were taken."""
        scheduler, db = self.scheduler, self.scheduler.app.db
        taken = 0
        while True:
            row = db.fetch_one("claim_task", host=scheduler.host, now=scheduler.clock(),
                               known=[job.id for job in scheduler.registry],
                               live_since=scheduler.live_since,
                               instance_id=scheduler.instance_id)
            if row is None:
                return taken
            taken += 1
            task = Task.from_row(row)
            try:
                self._start(task)
            except StoreError:
                raise
            except Exception as exc:  # a bad row must not take the daemon down
                self._fail(task.id, task.job_id, f"cannot start: {type(exc).__name__}: {exc}")

    def recover_abandoned(self) -> None:
        """Close or requeue tasks a daemon took and then died without closing."""
        scheduler, db = self.scheduler, self.scheduler.app.db
        now = scheduler.clock()
        events: list[Event] = []
        with db.transaction() as tx:  # a task closed as failed and its event go together
            for row in tx.fetch_all("abandoned_tasks_finished"):
                task_id, run_id, status = row["id"], row["run_id"], row["run_status"]
                self.log.warning("task_closed_after_crash", task_id=task_id,
                                 job=row["job_id"], status="done" if status == "ok" else "failed")
                if status == "ok":
                    tx.execute("finish_task", id=task_id, status="done", now=now,
                               run_id=run_id, error=None)
                else:
                    events.append(self._close_failed(
                        tx, task_id, row["job_id"],
                        task_error(run_id, status, row["run_error"]), run_id))
        for event in events:
            scheduler.app.store.log_event(event)
        for row in db.fetch_all("requeue_abandoned_tasks", taken_before=scheduler.live_since):
            self.log.warning("task_requeued_after_crash", task_id=row["id"], job=row["job_id"])

    def _fail(self, task_id: int, job_id: str, error: str, run_id: int | None = None) -> None:
        """Close a task as failed with ``error`` and record its ``task_failed`` event, in
        one transaction."""
        with self.scheduler.app.db.transaction() as tx:
            event = self._close_failed(tx, task_id, job_id, error, run_id)
        self.scheduler.app.store.log_event(event)

    def _close_failed(self, tx: Cursorish, task_id: int, job_id: str, error: str,
                      run_id: int | None) -> Event:
        """Inside ``tx``: close the task as failed and insert its ``task_failed`` event
        (returned, to be logged once the transaction commits)."""
        event = task_failed_event(self.scheduler.app.store, task_id, job_id, error, run_id)
        tx.execute("finish_task", id=task_id, status="failed", now=self.scheduler.clock(),
                   run_id=run_id, error=error)
        insert_event(tx, event)
        return event

    def _start(self, task: Task) -> None:
        scheduler = self.scheduler
        if task.job_id not in scheduler.registry:
            known = ", ".join(sorted(job.id for job in scheduler.registry))
            self._fail(task.id, task.job_id,
                       f"unknown job {task.job_id!r} (this daemon runs: {known})")
            return
        if not isinstance(task.args, dict):
            self._fail(task.id, task.job_id, "args must be a JSON object, not "
                       f"{type(task.args).__name__} {json.dumps(task.args)[:80]}")
            return
        job = scheduler.registry.get(task.job_id)
        with self._lock:
            outcome = scheduler.fire(job, task.slot, "manual", args=task.args)
            if isinstance(outcome, Execution):
                self._task_of_run[outcome.run_id] = task.id
                return
        if isinstance(outcome, JobRun):
            self._fail(task.id, task.job_id,
                       task_error(outcome.id, outcome.status, outcome.error), outcome.id)
        else:
            self._fail(task.id, task.job_id, "the run of this task was already claimed")

    def _on_finish(self, execution: Execution) -> None:
        with self._lock:
            task_id = self._task_of_run.pop(execution.run_id, None)
        if task_id is None:
            return
        try:
            if execution.status == "ok":
                self.scheduler.app.db.execute("finish_task", id=task_id, status="done",
                                              now=self.scheduler.clock(),
                                              run_id=execution.run_id, error=None)
            else:
                error = task_error(execution.run_id, str(execution.status), execution.error)
                self._fail(task_id, execution.job.id, error, execution.run_id)
        except StoreError as exc:
            self.log.error("task_not_closed", task_id=task_id, error=str(exc))


def task_error(run_id: int, status: str, error: str | None) -> str:
    """Why a task failed with its run: the run's status and its error, for example
    ``run 12 failed: ValueError: invalid literal for int() with base 10: 'x'``."""
    detail = (error or "").removeprefix(f"{status}:").strip()
    return f"run {run_id} {status}: {detail}" if detail else f"run {run_id} {status}"


def task_failed_event(store: Store, task_id: int, job_id: str, error: str,
                      run_id: int | None) -> Event:
    return store.new_event(
        "task_failed", f"task {task_id} ({job_id or 'no job'}) failed: {error}",
        importance="medium", source="tasks",
        details={"task_id": task_id, "job": job_id, "run_id": run_id, "error": error})


def listen_for_tasks(db: Any, wake: threading.Event, stop: threading.Event) -> None:
    """Set ``wake`` on every new task until ``stop``."""
    db.wake_on_notify(TASK_CHANNEL, wake, stop, retry_s=LISTEN_RETRY_S)
