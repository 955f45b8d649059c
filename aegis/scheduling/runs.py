"""Job runs: claiming a slot in ``job_runs`` and executing it off the loop thread.

Every run is claimed with ``INSERT ... ON CONFLICT DO NOTHING`` on (job_id, scope_key,
scheduled_for) before it runs, so a slot runs once however many daemons share the
database. Execution happens on the Runner's worker threads; a run past its timeout is
recorded and its worker slot released, so it blocks nothing else.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aegis.core.clock import utcnow
from aegis.core.errors import StoreError
from aegis.core.jsonable import json_safe
from aegis.core.logs import get_logger
from aegis.scheduling.registry import Job, JobContext, RunFailed, RunSkipped
from aegis.scheduling.repository import RunStatus, replay_run_finish, replay_run_record
from aegis.storage.events import EventType, Importance
from aegis.storage.runtime import Runtime


@dataclass
class Execution:
    """One run in flight."""

    run_id: int
    job: Job
    context: JobContext
    # set when a worker slot is taken
    started_at: datetime | None = None
    # started_at + the job's timeout
    deadline: datetime | None = None
    # its job_overrun is recorded
    overrun: bool = False
    done: threading.Event | None = None
    status: RunStatus | None = None
    # why it did not end 'ok' (an exception, a timeout...)
    error: str | None = None
    released: bool = False
    # Set for a host-scoped run made while the database was unreachable: the whole run
    # row is written (or spooled) when it finishes.
    offline: dict[str, Any] | None = None


# How long a job thread that finished its run waits for the next before it ends: jobs due
# every few seconds (or several at one tick) start on threads already running.
IDLE_THREAD_S = 10.0


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Runner:
    """Runs claimed jobs on at most AEGIS_WORKERS threads, with an overlap guard and
    timeouts.

    ``on_finish(execution)`` is called once per run, from the thread that closed it.
    """

    def __init__(self, runtime: Runtime, instance_id: str,
                 clock: Callable[[], datetime] = utcnow,
                 on_finish: Callable[[Execution], None] | None = None,
                 wake: threading.Event | None = None) -> None:
        self.runtime = runtime
        self.instance_id = instance_id
        self.clock = clock
        self.on_finish = on_finish
        self.wake = wake
        # when the loop that reaps timeouts means to wake next (None: not known): a run
        # whose deadline is later needs no wake-up, so a tick's jobs start without the loop
        # running between each of them
        self.wakes_at: datetime | None = None
        self.log = get_logger()
        self._worker_slots = threading.Semaphore(runtime.settings.workers)
        self._lock = threading.Lock()
        self._running: dict[int, Execution] = {}
        self._offline_ids = itertools.count(1)
        # threads that finished a run and wait for the next, and the runs handed to them
        self._idle_threads = 0
        self._handed: queue.SimpleQueue[Execution] = queue.SimpleQueue()

    # --- state ---

    def running_jobs(self) -> set[str]:
        with self._lock:
            return {e.job.id for e in self._running.values()}

    def in_flight(self) -> list[Execution]:
        with self._lock:
            return list(self._running.values())

    def next_deadline(self) -> datetime | None:
        """The soonest timeout or max_runtime of the runs in flight."""
        with self._lock:
            deadlines = [d for e in self._running.values() if e.status is None
                         for d in (e.deadline, None if e.overrun else _overrun_at(e))
                         if d is not None]
        return min(deadlines) if deadlines else None

    # --- execution ---

    def submit(self, job: Job, context: JobContext,
               offline: dict[str, Any] | None = None) -> Execution:
        """Start a claimed run: handed to a thread that finished a run lately and waits
        for the next (no thread to start: a tick's jobs start side by side at once), else
        on a thread of its own."""
        run_id = context.run_id if context.run_id is not None else -next(self._offline_ids)
        execution = Execution(run_id, job, context, done=threading.Event(), offline=offline)
        with self._lock:
            self._running[execution.run_id] = execution
            if self._idle_threads:
                self._idle_threads -= 1
                self._handed.put(execution)
                return execution
        threading.Thread(target=self._thread, args=(execution,), name=f"aegis-job-{job.id}",
                         daemon=True).start()
        return execution

    def _thread(self, execution: Execution | None) -> None:
        """A job thread: its run, then the runs handed to it while it waits, until none
        comes for IDLE_THREAD_S. A run past its timeout keeps its thread (nothing can
        stop a Python function) but not its worker slot."""
        while execution is not None:
            threading.current_thread().name = f"aegis-job-{execution.job.id}"
            self._work(execution)
            execution = self._next_handed()

    def _next_handed(self) -> Execution | None:
        with self._lock:
            self._idle_threads += 1
        try:
            return self._handed.get(timeout=IDLE_THREAD_S)
        except queue.Empty:
            with self._lock:  # a run handed just now was counted on this thread: its own
                try:
                    return self._handed.get_nowait()
                except queue.Empty:
                    self._idle_threads -= 1
                    return None

    def _work(self, execution: Execution) -> None:
        self._worker_slots.acquire()
        with self._lock:
            execution.started_at = self.clock()
            execution.deadline = execution.started_at + timedelta(
                seconds=execution.job.timeout_s)
            due = min(d for d in (execution.deadline, _overrun_at(execution)) if d)
        if self.wake is not None and (self.wakes_at is None or due < self.wakes_at):
            # the loop recomputes its sleep with the new deadline, which comes first
            self.wake.set()
        log = execution.context.log
        log.info("job_started", job=execution.job.id, run_id=execution.run_id,
                 trigger=execution.context.trigger)
        status, error, result = RunStatus.OK, None, None
        try:
            result = execution.job.func(execution.context)
        except RunSkipped as exc:
            status, error = RunStatus.SKIPPED, str(exc)
            log.warning("job_skipped", job=execution.job.id, run_id=execution.run_id,
                        reason=error)
        except RunFailed as exc:
            status, error, result = RunStatus.FAILED, str(exc), exc.result
            log.error("job_failed", job=execution.job.id, run_id=execution.run_id,
                      error=error)
        except Exception as exc:
            status, error = RunStatus.FAILED, describe_error(exc)
            log.error("job_failed", job=execution.job.id, run_id=execution.run_id,
                      error=error, exc_info=True)
        self._close(execution, status, error, result)

    def _close(self, execution: Execution, status: RunStatus, error: str | None,
               result: Any) -> None:
        with self._lock:
            if execution.status is not None:
                # already closed by a timeout or an interruption
                return
            execution.status = status
            execution.error = error
            release = not execution.released
            execution.released = True
        if release:
            self._worker_slots.release()
        now = self.clock()
        try:
            if execution.offline is not None:
                record = {**execution.offline, "finished_at": now.isoformat(), "status": status,
                          "error": error, "result": _jsonable(result)}
                self.runtime.store.write(lambda tx: replay_run_record(tx, record),
                                     {"kind": "job_run", **record})
            else:
                finish = {"id": execution.run_id, "job_id": execution.job.id,
                          "scheduled_for": execution.context.scheduled_for.isoformat(),
                          "status": status, "now": now.isoformat(), "error": error,
                          "result": _jsonable(result)}
                # spooled when the database is down, so the run never stays 'running' and
                # blocks the job's later slots as an overlap
                self.runtime.store.write(lambda tx: replay_run_finish(tx, finish),
                                     {"kind": "job_run_finish", **finish})
        except StoreError as exc:
            self.log.error("job_run_not_recorded", job=execution.job.id,
                           run_id=execution.run_id, status=status, error=str(exc))
        if status == RunStatus.OK:
            execution.context.log.info("job_finished", job=execution.job.id,
                                       run_id=execution.run_id, status=status)
        with self._lock:
            self._running.pop(execution.run_id, None)
        if execution.done is not None:
            execution.done.set()
        if self.on_finish is not None:
            self.on_finish(execution)

    def reap_timeouts(self) -> list[Execution]:
        """Close every run past its deadline as 'timeout'; return them."""
        now = self.clock()
        expired = [e for e in self.in_flight()
                   if e.status is None and e.deadline is not None and e.deadline <= now]
        for execution in expired:
            execution.context.cancelled.set()
            error = f"timeout: still running after {execution.job.timeout_s:g}s"
            self._close(execution, RunStatus.TIMEOUT, error, None)
            self.runtime.store.record_event(
                EventType.JOB_TIMEOUT, f"job {execution.job.id} timed out after "
                f"{execution.job.timeout_s:g}s", importance=Importance.HIGH,
                details={"job": execution.job.id, "run_id": execution.run_id,
                         "timeout_s": execution.job.timeout_s})
        return expired

    def report_overruns(self) -> list[Execution]:
        """Record one ``job_overrun`` for each run past its job's max_runtime; the run goes
        on (its timeout is what stops it)."""
        now = self.clock()
        with self._lock:
            over = [e for e in self._running.values() if e.status is None and not e.overrun
                    and (at := _overrun_at(e)) is not None and at <= now]
            for execution in over:
                execution.overrun = True
        for execution in over:
            job = execution.job
            self.runtime.store.record_event(
                EventType.JOB_OVERRUN, f"job {job.id} is still running after its max_runtime of "
                f"{job.max_runtime_s:g}s", importance=Importance.HIGH, source="scheduler",
                details={"job": job.id, "run_id": execution.run_id,
                         "max_runtime_s": job.max_runtime_s, "timeout_s": job.timeout_s,
                         "scheduled_for": execution.context.scheduled_for.isoformat(),
                         "started_at": execution.started_at.isoformat()
                         if execution.started_at else None})
        return over

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no run is in flight; False if some still are after ``timeout_s``."""
        deadline = self.clock() + timedelta(seconds=timeout_s)
        while True:
            flights = self.in_flight()
            if not flights:
                return True
            remaining = (deadline - self.clock()).total_seconds()
            if remaining <= 0:
                return False
            if flights[0].done is not None:
                flights[0].done.wait(min(remaining, 0.5))

    def interrupt_all(self, reason: str) -> list[Execution]:
        """Close every run still in flight as 'interrupted' (shutdown past the grace)."""
        flights = [e for e in self.in_flight() if e.status is None]
        for execution in flights:
            execution.context.cancelled.set()
            self._close(execution, RunStatus.INTERRUPTED, f"interrupted: {reason}", None)
        return flights


def _overrun_at(execution: Execution) -> datetime | None:
    limit_s = execution.job.max_runtime_s
    if limit_s is None or execution.started_at is None:
        return None
    return execution.started_at + timedelta(seconds=limit_s)


def _jsonable(result: Any) -> Any:
    if result is None:
        return None
    if not isinstance(result, dict | list | str | int | float | bool):
        result = {"value": repr(result)}
    return json_safe(result)

