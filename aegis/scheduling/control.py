"""``Aegis.scheduler``: start and stop the daemon loop in this process, and manage jobs,
runs and tasks. The CLI's job and task commands use the same calls."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aegis.core import clock
from aegis.core.clock import utcnow
from aegis.core.errors import AegisError, UsageError
from aegis.core.jsonable import to_json
from aegis.scheduling.daemon import Daemon, RunMode
from aegis.scheduling.heartbeat import live_since
from aegis.scheduling.job_settings import MisfirePolicy
from aegis.scheduling.registry import (
    DEFAULT_MISFIRE_GRACE_S,
    DEFAULT_TIMEOUT_S,
    Job,
    Registry,
    Scope,
)
from aegis.scheduling.repository import JobRecord, JobRun, Runs, RunStatus, RunTrigger
from aegis.scheduling.runs import Execution
from aegis.scheduling.scheduler import Scheduler
from aegis.scheduling.tasks import Task, Tasks
from aegis.scheduling.triggers import Trigger
from aegis.storage.runtime import Runtime

# A queued manual run is waited for this long beyond its job's timeout.
RUN_WAIT_MARGIN_S = 30.0


@dataclass(frozen=True)
class JobInfo:
    """A job as ``aegis jobs list`` shows it: times are UTC instants, ``timezone`` the
    zone its calendar (and the listing) follows."""

    id: str
    trigger: str
    scope: str
    next_run: datetime | None
    last_run: datetime | None
    last_status: RunStatus | None
    paused: bool
    enabled: bool
    description: str
    timezone: str = "UTC"
    # "module", or where a job added at run time comes from ("label: CONTAINER")
    source: str = "module"

    @classmethod
    def of_job(cls, job: Job, next_run: datetime | None, last: JobRun | None, *,
               paused: bool) -> JobInfo:
        """A job this process runs."""
        return cls(id=job.id, trigger=job.trigger.describe(), scope=job.scope,
                   next_run=_utc(next_run), last_run=last.scheduled_for if last else None,
                   last_status=last.status if last else None, paused=paused,
                   enabled=job.enabled, description=job.description, timezone=job.zone.key,
                   source=job.source or "module")

    @classmethod
    def of_record(cls, record: JobRecord, last: JobRun | None) -> JobInfo:
        """A job another daemon runs, as it advertised it."""
        return cls(id=record.id, trigger=record.trigger, scope=record.scope,
                   next_run=_utc(record.next_run_at),
                   last_run=last.scheduled_for if last else None,
                   last_status=last.status if last else None, paused=record.paused,
                   enabled=True, description=record.description, timezone=record.timezone,
                   source=record.source or "module")

    def shown_zone(self, fallback: ZoneInfo) -> ZoneInfo:
        """The zone its times are shown in: its own, else ``fallback`` (the zone another
        daemon advertised is one this machine's time zone database lacks)."""
        return _known_zone(self.timezone, fallback)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment else None


def _next_run(job: Job, record: JobRecord | None, now: datetime,
              alive_since: datetime) -> datetime | None:
    """A job's next run as a live daemon advertised it, else as its trigger has it."""
    if record is not None and record.seen_since(alive_since):
        return record.next_run_at
    return job.trigger.next_after(now)


class SchedulerControl:
    def __init__(self, runtime: Runtime, registry_loader: Callable[[], Registry]) -> None:
        self._runtime = runtime
        self._load_registry = registry_loader
        self._runs = Runs(runtime.db)
        self._tasks = Tasks(runtime.db)
        self._daemon: Daemon | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def registry(self) -> Registry:
        return self._load_registry()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _running_daemon(self) -> Daemon | None:
        return self._daemon if self.running else None

    # --- lifecycle ---

    def start(self) -> None:
        """Run the daemon loop in a background thread of this process, with the same claims,
        heartbeat and single-instance guard as ``aegis run``."""
        if self.running:
            raise UsageError("the scheduler is already running in this process")
        self._failure = None
        daemon = self._daemon = Daemon(self._runtime, self.registry,
                                       RunMode(handle_signals=False))
        self._thread = threading.Thread(target=self._run_daemon, args=(daemon,),
                                        name="aegis-scheduler", daemon=True)
        self._thread.start()
        while not daemon.started.wait(0.05):
            if not self._thread.is_alive():
                break
        if self._failure is not None:
            raise self._failure

    def _run_daemon(self, daemon: Daemon) -> None:
        try:
            daemon.run()
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

    def add_job(  # noqa: PLR0913
                # the Python API's face of Registry.add, with its options as keywords for
                # the same reason: app.scheduler.add_job(func, id=..., trigger=...,
                # timeout_s=...)
                self, func: Callable[..., Any], *, id: str, trigger: Trigger,
                scope: Scope = "host", misfire_grace_s: float = DEFAULT_MISFIRE_GRACE_S,
                timeout_s: float = DEFAULT_TIMEOUT_S, enabled: bool = True,
                description: str = "", timezone: str | None = None,
                misfire: str = MisfirePolicy.RUN_ONCE, max_runtime_s: float | None = None,
                expect_every_s: float | None = None) -> Job:
        """Add a job (see ``Registry.add``); with the scheduler running here, schedule it."""
        job = self.registry.add(id, func, trigger, scope=scope,
                                misfire_grace_s=misfire_grace_s, timeout_s=timeout_s,
                                enabled=enabled, description=description, timezone=timezone,
                                misfire=misfire, max_runtime_s=max_runtime_s,
                                expect_every_s=expect_every_s)
        daemon = self._running_daemon()
        if daemon is not None:
            daemon.scheduler.schedule_job(job)
            daemon.scheduler.advertise()
        return job

    def remove_job(self, job_id: str) -> None:
        self.registry.remove(job_id)
        daemon = self._running_daemon()
        if daemon is not None:
            daemon.scheduler.unschedule_job(job_id)

    def pause_job(self, job_id: str, by: str = "api") -> None:
        self._set_paused(job_id, True, by)

    def resume_job(self, job_id: str, by: str = "api") -> None:
        self._set_paused(job_id, False, by)

    def _set_paused(self, job_id: str, paused: bool, by: str) -> None:
        self._require_known(job_id)
        self._runs.set_paused(job_id, paused, utcnow(), by)
        daemon = self._running_daemon()
        if daemon is not None:
            daemon.scheduler.refresh_paused()

    def known_job_ids(self) -> set[str]:
        return {job.id for job in self.registry} | set(self._runs.job_records())

    def _require_known(self, job_id: str) -> None:
        if job_id not in self.known_job_ids():
            raise UsageError(f"no job {job_id!r} (see 'aegis jobs list')")

    def list_jobs(self) -> list[JobInfo]:
        """The jobs of this process, and those other live daemons advertise, by id."""
        now = utcnow()
        records = self._runs.job_records()
        last = self._runs.last_runs()
        alive_since = live_since(now, self._runtime.settings.heartbeat_interval_s)
        daemon = self._running_daemon()
        next_runs = daemon.scheduler.next_runs() if daemon is not None else {}
        infos: dict[str, JobInfo] = {}
        for job in self.registry:
            record = records.get(job.id)
            next_run = next_runs.get(job.id)
            if next_run is None and job.enabled:
                next_run = _next_run(job, record, now, alive_since)
            infos[job.id] = JobInfo.of_job(job, next_run, last.get(job.id),
                                           paused=record is not None and record.paused)
        for job_id, record in records.items():
            if job_id not in infos and record.seen_since(alive_since):
                infos[job_id] = JobInfo.of_record(record, last.get(job_id))
        return [infos[key] for key in sorted(infos)]

    def zones_of(self, job_ids: Iterable[str]) -> dict[str, ZoneInfo]:
        """The zone each job's times are shown in (``aegis jobs history``; ``jobs list``
        asks ``JobInfo.shown_zone``, the same rule): its own when this process defines it,
        else the one the daemon running it advertised, else (no daemon advertised it, or
        this machine's time zone database lacks it) AEGIS_TIMEZONE."""
        fallback = self._runtime.settings.zone
        records: dict[str, JobRecord] | None = None
        found = {}
        for job_id in job_ids:
            if job_id in self.registry:
                found[job_id] = self.registry.get(job_id).zone
                continue
            if records is None:
                records = self._runs.job_records()
            record = records.get(job_id)
            found[job_id] = _known_zone(record.timezone, fallback) if record else fallback
        return found

    # --- runs and tasks ---

    def run_job(self, job_id: str, wait: bool = True, args: dict[str, Any] | None = None,
                timeout_s: float | None = None) -> JobRun | Task:
        """A manual run (trigger ``manual``). With the scheduler running here, or for a
        job this process does not know, it is queued as a task for a daemon; otherwise it
        runs in this process. Returns the run's record (or the task, without ``wait``)."""
        daemon = self._running_daemon()
        if daemon is not None or job_id not in self.registry:
            task = self.enqueue(job_id, args, requested_by="api")
            if daemon is not None:
                daemon.wake.set()
            if not wait:
                return task
            limit_s = timeout_s
            if limit_s is None:
                limit_s = self._timeout_of(job_id) + RUN_WAIT_MARGIN_S
            task = self._tasks.wait(task.id, limit_s)
            if task.run_id is None:
                raise AegisError(f"task {task.id} for job {job_id!r} is {task.status}"
                                 + (f": {task.error}" if task.error else ""))
            return self._run(task.run_id)
        return self._run_here(self.registry.get(job_id), args, wait)

    def _run_here(self, job: Job, args: dict[str, Any] | None, wait: bool) -> JobRun:
        host = self._runtime.settings.host
        scheduler = Scheduler(self._runtime, self.registry,
                              instance_id=f"{host}-api-{uuid.uuid4().hex[:6]}")
        outcome = scheduler.fire(job, utcnow(), RunTrigger.MANUAL, args=args)
        if isinstance(outcome, JobRun):
            return outcome
        if not isinstance(outcome, Execution):
            raise AegisError(f"job {job.id!r}: the run could not be claimed")
        if wait and outcome.done is not None and not outcome.done.wait(job.timeout_s):
            scheduler.runner.reap_timeouts()
        return self._run(outcome.run_id)

    def _timeout_of(self, job_id: str) -> float:
        if job_id in self.registry:
            return self.registry.get(job_id).timeout_s
        return DEFAULT_TIMEOUT_S

    def _run(self, run_id: int) -> JobRun:
        run = self._runs.get(run_id)
        if run is None:
            raise AegisError(f"run {run_id} is not recorded")
        return run

    def history(self, job_id: str | None = None, limit: int = 20) -> list[JobRun]:
        return self._runs.history(job_id, limit)

    def enqueue(self, job_id: str, args: dict[str, Any] | None = None, *,
                requested_by: str = "api") -> Task:
        self._require_known(job_id)
        return self._tasks.add(job_id, args, requested_by=requested_by)

    def tasks(self, status: str | None = None, limit: int = 50) -> list[Task]:
        return self._tasks.listing(status, limit)

    def get_task(self, task_id: int) -> Task:
        return self._tasks.get(task_id)

    def wait_task(self, task_id: int, timeout_s: float) -> Task:
        return self._tasks.wait(task_id, timeout_s)

    def cancel_task(self, task_id: int) -> Task | None:
        return self._tasks.cancel(task_id, utcnow())


def _known_zone(name: str, fallback: ZoneInfo) -> ZoneInfo:
    try:
        return clock.zone(name)
    except ValueError:  # a zone another daemon's tz database knows and this one does not
        return fallback
