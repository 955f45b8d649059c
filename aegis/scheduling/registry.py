"""Jobs and services: what runs, when, where and for how long. Modules add them with
``register(registry)``.

The engine never imports a job by name: it loads the built-in job modules (the
repository's ``jobs/`` folder, installed as the ``aegis_jobs`` package), the modules in
AEGIS_JOB_MODULES and the ``aegis.jobs`` entry-point group, and calls each one's
``register``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aegis.core import clock
from aegis.core.clock import UTC_ZONE
from aegis.core.config import Settings
from aegis.core.durations import parse_time_of_day
from aegis.core.errors import ConfigError, UsageError
from aegis.scheduling import triggers
from aegis.scheduling.job_settings import (
    JOB_ID,
    SOURCED_JOB_ID,
    JobOverride,
    MisfirePolicy,
    job_overrides,
)
from aegis.scheduling.repository import RunTrigger
from aegis.scheduling.triggers import Trigger
from aegis.storage.runtime import Runtime
from aegis.storage.store import Store

Scope = Literal["host", "cluster"]
# the repository's jobs/ folder, as installed
BUILTIN_JOBS = "aegis_jobs"
ENTRY_POINT_GROUP = "aegis.jobs"
DEFAULT_MISFIRE_GRACE_S = 300.0
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class JobContext:
    """What a running job is handed."""

    job_id: str
    run_id: int | None
    trigger: RunTrigger
    scheduled_for: datetime
    now: datetime
    app: Runtime
    log: Any
    cancelled: threading.Event
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.app.settings

    @property
    def store(self) -> Store:
        return self.app.store


JobFunc = Callable[[JobContext], Any]


class RunSkipped(Exception):  # what a job says, not a fault
    """Raised by a job that finds its slot cannot run (its container is stopped): the run
    is recorded 'skipped' with the reason, and not retried."""


class RunFailed(Exception):
    """Raised by a job that failed with a result to keep (a command's exit code and
    output): the run is recorded 'failed' with the message and ``result``."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Job:
    id: str
    func: JobFunc
    trigger: Trigger
    scope: Scope = "host"
    misfire_grace_s: float = DEFAULT_MISFIRE_GRACE_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    enabled: bool = True
    description: str = ""
    # a calendar trigger's zone; how its times are shown
    zone: ZoneInfo = UTC_ZONE
    misfire: MisfirePolicy = MisfirePolicy.RUN_ONCE
    # a run going longer records one job_overrun
    max_runtime_s: float | None = None
    # no success for this long: job_silent
    expect_every_s: float | None = None
    # where a job added at run time comes from ("label: CONTAINER"); "" for a module's
    source: str = ""
    # a slot that finds the previous run still going runs too (else it is 'skipped')
    overlap: bool = False

    def scope_key(self, host: str) -> str:
        return host if self.scope == "host" else "cluster"


ServiceRun = Callable[[Runtime, threading.Event], None]
# told of each job added or replaced (the job) or removed (None), by id
JobListener = Callable[[str, "Job | None"], None]


@dataclass(frozen=True)
class Service:
    """A long-running loop the daemon keeps in a thread beside the scheduler (the Docker
    events watcher, the outbox sender...). ``run`` returns when ``stop`` is set.

    ``drain(grace_s)``, when given, waits up to ``grace_s`` for work the service started
    and must finish before the daemon exits (a container restart under way); False if
    some is still going. ``once``, when given, is what ``aegis run --once`` asks of the
    service instead of running it: its pending work, done now (the outbox delivered)."""

    name: str
    run: ServiceRun
    drain: Callable[[float], bool] | None = None
    once: Callable[[Runtime], object] | None = None


class Registry:
    """The jobs and services of one daemon. ``zone`` (AEGIS_TIMEZONE) is the zone of every
    daily, weekly and cron trigger added without one of its own; ``settings`` are what a
    job module's ``register`` may read to shape its jobs (the defaults when not given)."""

    def __init__(self, zone: ZoneInfo = UTC_ZONE, settings: Settings | None = None) -> None:
        self.zone = zone
        self.settings = settings or Settings()
        self._jobs: dict[str, Job] = {}
        self._services: dict[str, Service] = {}
        self._listeners: list[JobListener] = []
        self._lock = threading.Lock()

    def add_listener(self, listener: JobListener) -> None:
        """Have ``listener`` told of every job added, replaced or removed from now on (the
        scheduler, so that a job added while the daemon runs is scheduled)."""
        with self._lock:
            self._listeners.append(listener)

    def _tell(self, job_id: str, job: Job | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(job_id, job)
    def add(  # noqa: PLR0913
            # the API job modules call: every option a keyword with its default, of which a
            # module names the few it changes (registry.add("backup", backup,
            # daily("03:00"), timeout_s=3600)); a JobOptions object would make each module
            # import and build one for the same call
            self, job_id: str, func: JobFunc, trigger: Trigger, *, scope: Scope = "host",
            misfire_grace_s: float = DEFAULT_MISFIRE_GRACE_S,
            timeout_s: float = DEFAULT_TIMEOUT_S, enabled: bool = True,
            description: str = "", replace_existing: bool = False,
            timezone: str | None = None, misfire: str = MisfirePolicy.RUN_ONCE,
            max_runtime_s: float | None = None,
            expect_every_s: float | None = None, source: str = "",
            overlap: bool = False) -> Job:
        """Add a job. ``timezone`` (an IANA name) puts its daily, weekly or cron trigger on
        that zone's wall clock (default: the trigger's own zone, else AEGIS_TIMEZONE).
        ``source`` names where a job added at run time comes from (its id may then hold
        '.' and '-'); with ``overlap`` a slot runs even while the previous run goes on."""
        if misfire not in tuple(MisfirePolicy):
            raise UsageError(f"job {job_id!r}: misfire {misfire!r} is not one of "
                             f"{', '.join(MisfirePolicy)}")
        try:
            explicit = clock.zone(timezone) if timezone is not None else None
        except ValueError as exc:
            raise UsageError(f"job {job_id!r}: {exc}") from None
        trigger, job_zone = bind_zone(trigger, explicit, self.zone)
        job = Job(job_id, func, trigger, scope, misfire_grace_s, timeout_s, enabled,
                  description or (func.__doc__ or "").strip().split("\n")[0],
                  zone=job_zone, misfire=MisfirePolicy(misfire),
                  max_runtime_s=max_runtime_s or None, expect_every_s=expect_every_s or None,
                  source=source, overlap=overlap)
        validate_job(job)
        with self._lock:
            if job_id in self._jobs and not replace_existing:
                raise UsageError(f"job {job_id!r} is already registered")
            self._jobs[job_id] = job
        self._tell(job_id, job)
        return job

    def add_service(self, name: str, run: ServiceRun, *,
                    drain: Callable[[float], bool] | None = None,
                    once: Callable[[Runtime], object] | None = None) -> None:
        with self._lock:
            self._services[name] = Service(name, run, drain, once)

    def remove(self, job_id: str) -> Job:
        with self._lock:
            try:
                job = self._jobs.pop(job_id)
            except KeyError:
                raise UsageError(f"no job {job_id!r}") from None
        self._tell(job_id, None)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            try:
                return self._jobs[job_id]
            except KeyError:
                raise UsageError(f"no job {job_id!r}") from None

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[Job]:
        with self._lock:
            return iter(sorted(self._jobs.values(), key=lambda job: job.id))

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def services(self) -> list[Service]:
        with self._lock:
            return list(self._services.values())

    def apply_overrides(self, overrides: Mapping[str, JobOverride]) -> None:
        """Apply ``[jobs.ID]`` / ``AEGIS_JOB__ID__KEY`` settings; an unknown id is an error."""
        for job_id, override in overrides.items():
            if job_id not in self._jobs:
                raise ConfigError(f"jobs.{job_id}", f"no job {job_id!r} is registered "
                                  f"(known: {', '.join(sorted(self._jobs))})")
            self._jobs[job_id] = overridden(self._jobs[job_id], override)


def overridden(job: Job, override: JobOverride) -> Job:
    trigger = job.trigger
    if override.every_s is not None:
        trigger = triggers.Every(override.every_s)
    elif override.at is not None:
        at = parse_time_of_day(override.at).replace(tzinfo=None)
        if isinstance(job.trigger, triggers.Weekly):
            trigger = triggers.Weekly(job.trigger.weekday, at)
        else:
            trigger = triggers.Daily(at)
    elif override.cron is not None:
        trigger = triggers.cron(override.cron)
    zone = clock.zone(override.timezone) if override.timezone is not None else job.zone
    changes: dict[str, Any] = {"trigger": triggers.in_zone(trigger, zone), "zone": zone}
    for name in ("enabled", "misfire_grace_s", "timeout_s", "misfire"):
        if getattr(override, name) is not None:
            changes[name] = getattr(override, name)
    # 0 switches a default off
    for name in ("max_runtime_s", "expect_every_s"):
        if getattr(override, name) is not None:
            changes[name] = getattr(override, name) or None
    return replace(job, **changes)


def bind_zone(trigger: Trigger, explicit: ZoneInfo | None,
              default: ZoneInfo) -> tuple[Trigger, ZoneInfo]:
    """A job's trigger on its zone, and that zone: ``explicit`` (the job's ``timezone``),
    else a calendar trigger's own zone, else ``default`` (AEGIS_TIMEZONE)."""
    own = trigger.zone if isinstance(trigger, triggers.WallClock) else None
    zone = explicit or own or default
    return triggers.in_zone(trigger, zone), zone


def validate_job(job: Job) -> None:
    if job.source and not SOURCED_JOB_ID.match(job.id):
        raise UsageError(f"job id {job.id!r} is not letters, digits, '.', '-' and '_'")
    if not job.source and not JOB_ID.match(job.id):
        raise UsageError(f"job id {job.id!r} is not lower-case snake_case")
    if not callable(job.func):
        raise UsageError(f"job {job.id!r}: func is not callable")
    if job.scope not in ("host", "cluster"):
        raise UsageError(f"job {job.id!r}: scope must be 'host' or 'cluster'")
    if not all(hasattr(job.trigger, a) for a in ("next_after", "latest_at_or_before")):
        raise UsageError(f"job {job.id!r}: trigger is not a trigger")
    if job.misfire_grace_s < 0 or job.timeout_s <= 0:
        raise UsageError(f"job {job.id!r}: misfire grace must be >= 0 and timeout > 0")
    if any(limit is not None and limit <= 0 for limit in (job.max_runtime_s,
                                                          job.expect_every_s)):
        raise UsageError(f"job {job.id!r}: max_runtime and expect_every must be > 0")


def load_jobs(settings: Settings, registry: Registry | None = None) -> Registry:
    """A registry with every job module's jobs, with configuration overrides applied.

    A module that fails to import or to register raises ConfigError naming it.
    """
    registry = registry or Registry(settings.zone, settings)
    builtin_jobs = importlib.import_module(BUILTIN_JOBS)
    names = [f"{BUILTIN_JOBS}.{m.name}" for m in pkgutil.iter_modules(builtin_jobs.__path__)
             if not m.name.startswith("_")]
    names += list(settings.job_modules)
    loaders: list[tuple[str, Callable[[], Any]]] = [
        (name, functools.partial(importlib.import_module, name)) for name in names
    ]
    loaders += [(f"entry point {ep.name} ({ep.value})", ep.load)
                for ep in entry_points(group=ENTRY_POINT_GROUP)]
    for label, load in loaders:
        try:
            module = load()
            register = getattr(module, "register", None)
            if not callable(register):
                raise UsageError("has no register(registry) function")
            register(registry)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"job module {label}", f"{type(exc).__name__}: {exc}") from None
    registry.apply_overrides(job_overrides(settings))
    return registry
