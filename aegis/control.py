"""``Aegis.scheduler``: start and stop the daemon loop in this process, and manage jobs,
runs and tasks. The CLI's job and task commands use the same calls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aegis.clock import utcnow
from aegis.errors import AegisError, UsageError
from aegis.heartbeat import stale_after_s
from aegis.registry import DEFAULT_MISFIRE_GRACE_S, DEFAULT_TIMEOUT_S, Job, Registry, Scope
from aegis.runs import Execution, JobRun
from aegis.tasks import Task, add_task, cancel_task, get_task, list_tasks, wait_task
from aegis.triggers import Trigger

START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class JobInfo:
    id: str
    trigger: str
    scope: str
    next_run: datetime | None
    last_run: datetime | None
    last_status: str | None
    paused: bool
    enabled: bool
    description: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "trigger": self.trigger, "scope": self.scope,
                "next_run": self.next_run.isoformat() if self.next_run else None,
                "last_run": self.last_run.isoformat() if self.last_run else None,
                "last_status": self.last_status, "paused": self.paused,
                "enabled": self.enabled, "description": self.description}


class SchedulerControl:
    def __init__(self, app: Any, registry_loader: Callable[[], Registry]) -> None:
        self._app = app
        self._load_registry = registry_loader
        self._daemon: Any = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def registry(self) -> Registry:
        return self._load_registry()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- lifecycle ---

    def start(self) -> None:
        """Run the daemon loop in a background thread of this process, with the same claims,
        heartbeat and single-instance guard as ``aegis run``."""
        from aegis.daemon import Daemon

        if self.running:
            raise UsageError("the scheduler is already running in this process")
        self._failure = None
        self._daemon = Daemon(self._app, self.registry, handle_signals=False)
        self._thread = threading.Thread(target=self._run_daemon, name="aegis-scheduler",
                                        daemon=True)
        self._thread.start()
        started = self._daemon.started
        while not started.wait(0.05):
            if not self._thread.is_alive():
                break
        if self._failure is not None:
            raise self._failure

    def _run_daemon(self) -> None:
        try:
            self._daemon.run()
        except BaseException as exc:
            self._failure = exc

    def stop(self) -> None:
        """Graceful: running jobs get the shutdown grace to finish."""
        if self._daemon is None or self._thread is None:
            return
        self._daemon.request_stop()
        self._thread.join()
        self._daemon, self._thread = None, None

    # --- jobs ---

    def add_job(self, func: Callable[..., Any], *, id: str, trigger: Trigger,
                scope: Scope = "host", misfire_grace_s: float = DEFAULT_MISFIRE_GRACE_S,
                timeout_s: float = DEFAULT_TIMEOUT_S, enabled: bool = True,
                description: str = "") -> Job:
        job = self.registry.add(id, func, trigger, scope=scope,
                                misfire_grace_s=misfire_grace_s, timeout_s=timeout_s,
                                enabled=enabled, description=description)
        if self.running:
            self._daemon.scheduler.schedule_job(job)
            self._daemon.scheduler.advertise()
        return job

    def remove_job(self, job_id: str) -> None:
        self.registry.remove(job_id)
        if self.running:
            self._daemon.scheduler.unschedule_job(job_id)

    def pause_job(self, job_id: str, by: str = "api") -> None:
        self._set_paused(job_id, True, by)

    def resume_job(self, job_id: str, by: str = "api") -> None:
        self._set_paused(job_id, False, by)

    def _set_paused(self, job_id: str, paused: bool, by: str) -> None:
        self._require_known(job_id)
        self._app.db.execute("set_paused", id=job_id, paused=paused, now=utcnow(), by=by)
        if self.running:
            self._daemon.scheduler.refresh_paused()

    def known_job_ids(self) -> set[str]:
        ids = {job.id for job in self.registry}
        ids.update(row["id"] for row in self._app.db.fetch_all("list_job_rows"))
        return ids

    def _require_known(self, job_id: str) -> None:
        if job_id not in self.known_job_ids():
            raise UsageError(f"no job {job_id!r} (see 'aegis jobs list')")

    def list_jobs(self) -> list[JobInfo]:
        now = utcnow()
        rows = {row["id"]: row for row in self._app.db.fetch_all("list_job_rows")}
        last = {row["job_id"]: row for row in self._app.db.fetch_all("last_runs")}
        live_since = now - timedelta(seconds=stale_after_s(
            self._app.settings.heartbeat_interval_s))
        next_runs = self._daemon.scheduler.next_runs() if self.running else {}
        infos: dict[str, JobInfo] = {}
        for job in self.registry:
            row = rows.get(job.id, {})
            next_run = next_runs.get(job.id)
            if next_run is None and job.enabled:
                advertised = row.get("next_run_at")
                fresh = row.get("seen_at") and row["seen_at"] > live_since
                next_run = advertised if fresh else job.trigger.next_after(now)
            infos[job.id] = self._info(job.id, job.trigger.describe(), job.scope, next_run,
                                       last.get(job.id), bool(row.get("paused")),
                                       job.enabled, job.description)
        for job_id, row in rows.items():
            if job_id not in infos and row["seen_at"] and row["seen_at"] > live_since:
                infos[job_id] = self._info(job_id, row["trigger"], row["scope"],
                                           row["next_run_at"], last.get(job_id),
                                           row["paused"], True, row["description"])
        return [infos[key] for key in sorted(infos)]

    @staticmethod
    def _info(job_id: str, trigger: str, scope: str, next_run: datetime | None,
              last: dict[str, Any] | None, paused: bool, enabled: bool,
              description: str) -> JobInfo:
        return JobInfo(id=job_id, trigger=trigger, scope=scope, next_run=next_run,
                       last_run=last["scheduled_for"] if last else None,
                       last_status=last["status"] if last else None, paused=paused,
                       enabled=enabled, description=description)

    # --- runs and tasks ---

    def run_job(self, job_id: str, wait: bool = True, args: dict[str, Any] | None = None,
                timeout_s: float | None = None) -> JobRun | Task:
        """A manual run (trigger ``manual``). With the scheduler running here, or for a
        job this process does not know, it is queued as a task for a daemon; otherwise it
        runs in this process. Returns the run's record (or the task, without ``wait``)."""
        if self.running or job_id not in self.registry:
            task = self.enqueue(job_id, args, requested_by="api")
            if self.running:
                self._daemon.wake.set()
            if not wait:
                return task
            limit_s = timeout_s if timeout_s is not None else self._timeout_of(job_id) + 30
            task = wait_task(self._app.db, task.id, limit_s)
            if task.run_id is None:
                raise AegisError(f"task {task.id} for job {job_id!r} is {task.status}"
                                 + (f": {task.error}" if task.error else ""))
            return self._run(task.run_id)
        return self._run_here(self.registry.get(job_id), args, wait)

    def _run_here(self, job: Job, args: dict[str, Any] | None, wait: bool) -> JobRun:
        import uuid

        from aegis.scheduler import Scheduler

        scheduler = Scheduler(self._app, self.registry,
                              instance_id=f"{self._app.settings.host}-api-{uuid.uuid4().hex[:6]}")
        outcome = scheduler.fire(job, utcnow(), "manual", args=args)
        if isinstance(outcome, JobRun):
            return outcome
        if not isinstance(outcome, Execution):
            raise AegisError(f"job {job.id!r}: the run could not be claimed")
        if wait and outcome.done is not None and not outcome.done.wait(job.timeout_s):
            scheduler.runner.reap_timeouts()
        return self._run(outcome.run_id)

    def _timeout_of(self, job_id: str) -> float:
        return self.registry.get(job_id).timeout_s if job_id in self.registry else 600.0

    def _run(self, run_id: int) -> JobRun:
        row = self._app.db.fetch_one("get_run", id=run_id)
        if row is None:
            raise AegisError(f"run {run_id} is not recorded")
        return JobRun.from_row(row)

    def history(self, job_id: str | None = None, limit: int = 20) -> list[JobRun]:
        rows = self._app.db.fetch_all("job_history", job_id=job_id, limit=limit)
        return [JobRun.from_row(row) for row in rows]

    def enqueue(self, job_id: str, args: dict[str, Any] | None = None, *,
                requested_by: str = "api") -> Task:
        self._require_known(job_id)
        return add_task(self._app.db, job_id, args, requested_by=requested_by)

    def tasks(self, status: str | None = None, limit: int = 50) -> list[Task]:
        return list_tasks(self._app.db, status, limit)

    def task(self, task_id: int) -> Task:
        return get_task(self._app.db, task_id)

    def wait_task(self, task_id: int, timeout_s: float) -> Task:
        return wait_task(self._app.db, task_id, timeout_s)

    def cancel_task(self, task_id: int) -> Task | None:
        return cancel_task(self._app.db, task_id, utcnow())
