"""The task queue: durable one-off work, and the owner of the ``tasks`` table
(aegis/storage/sql/tasks.sql), whose queries hand back ``Task`` (or ``AbandonedTask``)
dataclasses.

Rows come from ``aegis jobs run``, ``aegis tasks add``, the Python API or plain SQL
INSERTs; an insert trigger NOTIFYs ``aegis_tasks`` so a daemon wakes within a second.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from aegis.core.errors import StoreError, UsageError
from aegis.core.jsonable import to_json
from aegis.core.logs import get_logger
from aegis.scheduling.repository import JobRun, RunStatus, RunTrigger
from aegis.scheduling.runs import Execution
from aegis.scheduling.scheduler import Scheduler
from aegis.storage.db import Database, Queries
from aegis.storage.events import Event, EventType, Importance
from aegis.storage.rows import as_row, as_rows, maybe_row
from aegis.storage.store import Store, insert_event

TASK_CHANNEL = "aegis_tasks"
WAIT_POLL_S = 0.2


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED)


@dataclass(frozen=True)
class Task:
    """A row of ``tasks``: one queued run of a job, with its arguments."""

    id: int
    job_id: str
    # a JSON object as queued by aegis; a row INSERTed by hand may hold any JSON
    args: dict[str, Any]
    status: TaskStatus
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
        microseconds modulo a second; tasks.sql's queries use the same rule."""
        return self.created_at + timedelta(microseconds=self.id % 1_000_000)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


@dataclass(frozen=True)
class AbandonedTask:
    """A task left running by a daemon that died after its run had finished."""

    id: int
    job_id: str
    run_id: int
    run_status: RunStatus
    run_error: str | None


class Tasks:
    """The named queries of the ``tasks`` table, on the pool or inside a transaction."""

    def __init__(self, db: Queries) -> None:
        self.db = db

    def add(self, job_id: str, args: dict[str, Any] | None = None, *,
            requested_by: str = "cli", host: str | None = None) -> Task:
        row = self.db.fetch_one("add_task", job_id=job_id, args=dict(args or {}),
                                requested_by=requested_by, host=host)
        # INSERT ... RETURNING: always a row
        assert row is not None
        return as_row(Task, row)

    def get(self, task_id: int) -> Task:
        task = maybe_row(Task, self.db.fetch_one("get_task", id=task_id))
        if task is None:
            raise UsageError(f"no task {task_id}")
        return task

    def listing(self, status: str | None = None, limit: int = 50) -> list[Task]:
        return as_rows(Task, self.db.fetch_all("list_tasks", status=status, limit=limit))

    def cancel(self, task_id: int, now: datetime) -> Task | None:
        """Cancel a pending task; None when it exists but has already started."""
        self.get(task_id)
        return maybe_row(Task, self.db.fetch_one("cancel_task", id=task_id, now=now))

    def wait(self, task_id: int, timeout_s: float, poll_s: float = WAIT_POLL_S) -> Task:
        """Poll until the task is finished (or ``timeout_s`` passes); return its last state."""
        deadline = time.monotonic() + timeout_s
        while True:
            task = self.get(task_id)
            if task.status in FINISHED or time.monotonic() >= deadline:
                return task
            time.sleep(poll_s)

    def claim(self, *, host: str, now: datetime, known: list[str], live_since: datetime,
              instance_id: str) -> Task | None:
        """Take the oldest pending task this daemon may run (it runs a job of ``known``)."""
        return maybe_row(Task, self.db.fetch_one("claim_task", host=host, now=now, known=known,
                                                 live_since=live_since,
                                                 instance_id=instance_id))

    def finish(self, task_id: int, status: TaskStatus, now: datetime, run_id: int | None,
               error: str | None) -> None:
        self.db.execute("finish_task", id=task_id, status=status, now=now, run_id=run_id,
                        error=error)

    def abandoned_finished(self) -> list[AbandonedTask]:
        """Running tasks whose run ended while no daemon was there to close them (locked
        until the transaction ends)."""
        return as_rows(AbandonedTask, self.db.fetch_all("abandoned_tasks_finished"))

    def requeue_abandoned(self, taken_before: datetime) -> list[Task]:
        """Put back to pending the tasks taken by daemons silent since ``taken_before``
        that never claimed a run; those tasks."""
        return as_rows(Task, self.db.fetch_all("requeue_abandoned_tasks",
                                               taken_before=taken_before))

    def pending_at(self, as_of: datetime, host: str | None = None) -> int:
        """How many tasks were waiting at ``as_of`` (for ``host``: its own and the
        unassigned ones)."""
        row = self.db.fetch_one("digest_pending_tasks", as_of=as_of, host=host)
        return int(row["pending"]) if row else 0


class TaskQueue:
    """Claims pending tasks for a scheduler and closes them when their runs finish."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.db: Database = scheduler.runtime.db
        self.store: Store = scheduler.runtime.store
        self.tasks = Tasks(self.db)
        self.log = get_logger()
        self._task_of_run: dict[int, int] = {}
        self._lock = threading.Lock()
        scheduler.add_finish_hook(self._on_finish)

    def claim_pending(self) -> int:
        """Start every pending task this daemon may run; return how many were taken."""
        scheduler = self.scheduler
        taken = 0
        while True:
            task = self.tasks.claim(host=scheduler.host, now=scheduler.clock(),
                                    known=[job.id for job in scheduler.registry],
                                    live_since=scheduler.live_since,
                                    instance_id=scheduler.instance_id)
            if task is None:
                return taken
            taken += 1
            try:
                self._start(task)
            except StoreError:
                raise
            # a bad row must not take the daemon down
            except Exception as exc:
                self._fail(task.id, task.job_id, f"cannot start: {type(exc).__name__}: {exc}")

    def recover_abandoned(self) -> None:
        """Close or requeue tasks a daemon took and then died without closing."""
        now = self.scheduler.clock()
        events: list[Event] = []
        # a task closed as failed and its event go together
        with self.db.transaction() as tx:
            tasks = Tasks(tx)
            for task in tasks.abandoned_finished():
                ok = task.run_status == RunStatus.OK
                self.log.warning("task_closed_after_crash", task_id=task.id, job=task.job_id,
                                 status=TaskStatus.DONE if ok else TaskStatus.FAILED)
                if ok:
                    tasks.finish(task.id, TaskStatus.DONE, now, task.run_id, None)
                else:
                    events.append(self._close_failed(
                        tx, task.id, task.job_id,
                        task_error(task.run_id, task.run_status, task.run_error), task.run_id))
        for event in events:
            self.store.log_event(event)
        for requeued in self.tasks.requeue_abandoned(self.scheduler.live_since):
            self.log.warning("task_requeued_after_crash", task_id=requeued.id,
                             job=requeued.job_id)

    def _fail(self, task_id: int, job_id: str, error: str, run_id: int | None = None) -> None:
        """Close a task as failed with ``error`` and record its ``task_failed`` event, in
        one transaction."""
        with self.db.transaction() as tx:
            event = self._close_failed(tx, task_id, job_id, error, run_id)
        self.store.log_event(event)

    def _close_failed(self, tx: Queries, task_id: int, job_id: str, error: str,
                      run_id: int | None) -> Event:
        """Inside ``tx``: close the task as failed and insert its ``task_failed`` event
        (returned, to be logged once the transaction commits)."""
        event = task_failed_event(self.store, task_id, job_id, error, run_id)
        Tasks(tx).finish(task_id, TaskStatus.FAILED, self.scheduler.clock(), run_id, error)
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
            outcome = scheduler.fire(job, task.slot, RunTrigger.MANUAL, args=task.args)
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
            if execution.status == RunStatus.OK:
                self.tasks.finish(task_id, TaskStatus.DONE, self.scheduler.clock(),
                                  execution.run_id, None)
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
        EventType.TASK_FAILED, f"task {task_id} ({job_id or 'no job'}) failed: {error}",
        importance=Importance.MEDIUM, source="tasks",
        details={"task_id": task_id, "job": job_id, "run_id": run_id, "error": error})

