"""``LabelJobs``: the jobs containers declare in their labels, found and kept registered
while the daemon runs, and each slot of one run in its container.

The ``label_jobs`` service reads the engine's event stream: a container created or started
with job labels registers its jobs (a recreate with other labels replaces them), one
destroyed unregisters them (once, with a ``label_job_unregistered`` event; their runs
stay). A sweep of every container every AEGIS_LABEL_JOBS_SWEEP is the safety net for
events missed while the stream was down. A label that declares no job is a
``label_job_invalid`` event, once per container start, and nothing else stops.

Registering is adding the job to the daemon's ``Registry`` (replacing it); the scheduler
is told and puts it on its schedule at once, knowing nothing of Docker.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aegis.core.clock import utcnow
from aegis.core.errors import DatabaseUnavailable, StoreError, UsageError
from aegis.core.logs import get_logger, secret_values
from aegis.scheduling.registry import JobContext, Registry, RunFailed, RunSkipped
from aegis.storage.events import EventType, Importance
from aegis.storage.runtime import Runtime
from aegis.supervision.docker import docker_client, docker_errors
from aegis.supervision.labeljobs.alerts import Failure, FailureAlerts
from aegis.supervision.labeljobs.execute import (
    ExecOutcome,
    Target,
    run_container,
    run_exec,
    secrets_of,
    target_of,
)
from aegis.supervision.labeljobs.spec import (
    JobKind,
    JobScope,
    LabelJobSpec,
    LabelProblem,
    has_job_labels,
    read_labels,
)
from aegis.supervision.protocol.strikes import Phase
from aegis.supervision.recreate import is_aside
from aegis.supervision.repository import Containers

EVENT_ACTIONS = ("create", "start", "destroy", "rename")
# the name compose gives a container it is recreating, until it removes it
COMPOSE_ASIDE = re.compile(r"^[0-9a-f]{12}_.")
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 5.0
# a stream that ends sooner than this was refused or broken
SHORT_STREAM_S = 5.0
# a run's client waits for the engine this much beyond the job's timeout
CLIENT_MARGIN_S = 60.0
# connections a shared run client keeps (runs of one tick use it side by side)
RUN_POOL_SIZE = 64


@dataclass
class Registered:
    """A label job registered, and the containers on this host that declare it (more
    than one for scope=service with replicas)."""

    spec: LabelJobSpec
    containers: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Seen:
    """A container as the event stream or a listing shows it."""

    id: str
    name: str
    labels: dict[str, str]


class LabelJobs:
    """The label jobs of one daemon: what is registered, which container declares what,
    the problems already recorded, and the failing jobs' messages."""

    def __init__(self, registry: Registry,
                 client_factory: Callable[..., Any] = docker_client) -> None:
        self.registry = registry
        self.client_factory = client_factory
        self.alerts = FailureAlerts()
        self.log = get_logger()
        self.swept = threading.Event()  # set after each sweep (tests, the benchmark)
        self._jobs: dict[str, Registered] = {}
        self._reported: set[str] = set()  # containers whose problems are recorded
        self._fresh: set[str] = set()  # created, not started yet
        # the clients runs share, by read timeout (a new client costs a /version call)
        self._run_clients: dict[int, Any] = {}
        self._lock = threading.RLock()

    # --- the service ---

    def watch(self, runtime: Runtime, stop: threading.Event) -> None:
        """The ``label_jobs`` service: off with AEGIS_LABEL_JOBS=false."""
        if not runtime.settings.label_jobs:
            return
        delay_s = RECONNECT_MIN_S
        while not stop.is_set():
            opened = time.monotonic()
            try:
                self._follow(runtime, stop)
            except docker_errors() as exc:
                self.log.warning("label_jobs_engine_unavailable", error=str(exc))
            if time.monotonic() - opened >= SHORT_STREAM_S:  # it ran: reconnect soon
                delay_s = RECONNECT_MIN_S
            stop.wait(delay_s)
            # refused (a proxy without EVENTS) or broken at once: back off
            delay_s = min(delay_s * 2, RECONNECT_MAX_S)

    def _follow(self, runtime: Runtime, stop: threading.Event) -> None:
        client = self.client_factory()
        inbox: queue.Queue[Any] = queue.Queue()
        try:
            stream = client.events(decode=True, filters={"type": "container",
                                                         "event": list(EVENT_ACTIONS)})
            reader = threading.Thread(target=_read, args=(stream, inbox), daemon=True,
                                      name="aegis-label-jobs-events")
            reader.start()
            try:
                self._loop(runtime, client, inbox, stop)
            finally:
                stream.close()
        finally:
            client.close()

    def _loop(self, runtime: Runtime, client: Any, inbox: queue.Queue[Any],
              stop: threading.Event) -> None:
        sweep_s = runtime.settings.label_jobs_sweep_s
        next_sweep = time.monotonic()
        while not stop.is_set():
            if time.monotonic() >= next_sweep:
                self._safely(self.sweep, runtime, client)
                next_sweep = time.monotonic() + sweep_s
            try:
                item = inbox.get(timeout=min(1.0, max(0.0, next_sweep - time.monotonic())))
            except queue.Empty:
                continue
            if item is None:  # the stream ended: reconnect, and sweep
                return
            self._safely(self.on_event, runtime, client, item)

    def _safely(self, func: Callable[..., Any], *args: Any) -> None:
        try:
            func(*args)
        except (StoreError, RunSkipped) as exc:
            self.log.warning("label_jobs_step_failed", step=func.__name__, error=str(exc))

    # --- what the engine says ---

    def on_event(self, runtime: Runtime, client: Any, event: dict[str, Any]) -> None:
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        container_id = str(actor.get("ID") or event.get("id") or "")
        attributes = dict(actor.get("Attributes") or {})
        if action == "destroy":
            self.forget(runtime, container_id, "its container was removed")
            return
        if action == "rename":
            self.sweep(runtime, client)
            return
        with self._lock:
            if action == "create":  # told now; its first start is not a new one
                self._fresh.add(container_id)
            elif action == "start" and container_id in self._fresh:
                self._fresh.discard(container_id)
            elif action == "start":  # started again: its problems are told again
                self._reported.discard(container_id)
        name = str(attributes.pop("name", "") or container_id[:12])
        for key in ("image", "exitCode", "signal"):
            attributes.pop(key, None)
        self.found(runtime, Seen(container_id, name, attributes))

    def sweep(self, runtime: Runtime, client: Any) -> None:
        """Every container's labels read again; jobs of containers gone, unregistered."""
        listing = client.api.containers(all=True)
        present = set()
        for entry in listing:
            seen = Seen(entry["Id"], (entry.get("Names") or ["/?"])[0].lstrip("/"),
                        dict(entry.get("Labels") or {}))
            present.add(seen.id)
            self.found(runtime, seen)
        with self._lock:
            gone = {c for r in self._jobs.values() for c in r.containers} - present
            self._reported &= present  # removed while no event said so
            self._fresh &= present
        for container_id in gone:
            self.forget(runtime, container_id, "its container is gone")
        self.swept.set()

    def found(self, runtime: Runtime, seen: Seen) -> None:
        """Register what ``seen``'s labels declare; unregister what they no longer do. A
        container set aside while it is replaced (by compose or aegis) declares nothing:
        its replacement will."""
        if set_aside(seen.name):
            self.forget(runtime, seen.id, "its container is being replaced")
            return
        declared = read_labels(seen.name, seen.labels,
                               run_allowed=runtime.settings.label_jobs_run) \
            if has_job_labels(seen.labels) else None
        specs = declared.specs if declared else ()
        problems = list(declared.problems) if declared else []
        with self._lock:
            wanted = set()
            for spec in specs:
                problem = self._register(runtime, seen.id, spec)
                if problem is None:
                    wanted.add(spec.job_id)
                else:
                    problems.append(problem)
            dropped = [job_id for job_id, r in self._jobs.items()
                       if seen.id in r.containers and job_id not in wanted]
            first_report = seen.id not in self._reported
            if declared is not None:
                self._reported.add(seen.id)
        for job_id in dropped:
            self._drop(runtime, job_id, seen.id, "its container no longer declares it")
        if first_report:
            for problem in problems:
                self._record_problem(runtime, seen.id, problem)

    def forget(self, runtime: Runtime, container_id: str, why: str) -> None:
        with self._lock:
            self._reported.discard(container_id)
            self._fresh.discard(container_id)
            job_ids = [job_id for job_id, r in self._jobs.items()
                       if container_id in r.containers]
        for job_id in job_ids:
            self._drop(runtime, job_id, container_id, why)

    # --- the registry ---

    def _register(self, runtime: Runtime, container_id: str,
                  spec: LabelJobSpec) -> LabelProblem | None:
        """Register ``spec`` (or note one more container of it); a problem when its id is
        taken by another job."""
        job_id = spec.job_id
        current = self._jobs.get(job_id)
        if current is None and job_id in self.registry:
            return LabelProblem(spec.container, spec.label_prefix,
                                f"the job id {job_id} is taken by a job of a module")
        if current is not None and container_id not in current.containers:
            if spec.scope != JobScope.SERVICE or current.spec.scope != JobScope.SERVICE:
                return LabelProblem(spec.container, spec.label_prefix,
                                    f"the job name is used twice: {job_id} is already "
                                    f"declared by {current.spec.container}")
            current.containers.add(container_id)  # one more replica of the service
            return None
        if current is not None and _same(current.spec, spec):
            return None
        try:
            self.registry.add(
                job_id, self._job_func(job_id), spec.trigger,
                scope="cluster" if spec.scope == JobScope.SERVICE else "host",
                timeout_s=spec.timeout_s, description=" ".join(spec.command)[:200],
                replace_existing=True, timezone=spec.timezone, misfire=spec.misfire,
                max_runtime_s=spec.max_runtime_s, expect_every_s=spec.expect_every_s,
                source=spec.source_text, overlap=spec.overlap)
        except UsageError as exc:
            return LabelProblem(spec.container, spec.label_prefix, str(exc))
        self._jobs[job_id] = Registered(spec, {container_id})
        self.log.info("label_job_registered", job=job_id, container=spec.container,
                      schedule=spec.schedule)
        _record(runtime, EventType.LABEL_JOB_REGISTERED,
                f"label job {job_id} registered from container {spec.container} "
                f"({spec.schedule})", Importance.LOW,
                {"job": job_id, "container": spec.container, "schedule": spec.schedule,
                 "scope": spec.scope, "source": spec.source})
        return None

    def _drop(self, runtime: Runtime, job_id: str, container_id: str, why: str) -> None:
        with self._lock:
            current = self._jobs.get(job_id)
            if current is None:
                return
            current.containers.discard(container_id)
            if current.containers:
                return
            del self._jobs[job_id]
            if job_id in self.registry:
                self.registry.remove(job_id)
        self.log.info("label_job_unregistered", job=job_id, why=why)
        _record(runtime, EventType.LABEL_JOB_UNREGISTERED,
                f"label job {job_id} unregistered: {why}", Importance.MEDIUM,
                {"job": job_id, "container": current.spec.container, "reason": why})

    def _record_problem(self, runtime: Runtime, container_id: str,
                        problem: LabelProblem) -> None:
        self.log.warning("label_job_invalid", container=problem.container,
                         label=problem.label, reason=problem.reason)
        _record(runtime, EventType.LABEL_JOB_INVALID,
                f"container {problem.container}: label {problem.label} declares no job: "
                f"{problem.reason}", Importance.MEDIUM,
                {"container": problem.container, "container_id": container_id,
                 "label": problem.label, "reason": problem.reason})

    def registered(self) -> dict[str, LabelJobSpec]:
        with self._lock:
            return {job_id: r.spec for job_id, r in self._jobs.items()}

    # --- one run ---

    def _job_func(self, job_id: str) -> Callable[[JobContext], Any]:
        def run(ctx: JobContext) -> dict[str, Any]:
            return self.run(ctx, job_id)

        run.__doc__ = f"label job {job_id}"
        return run

    def run(self, ctx: JobContext, job_id: str) -> dict[str, Any]:
        """One slot: skipped when its container cannot run it, else its command's result;
        a non-zero exit or a timeout fails the run and tells the job's living message."""
        with self._lock:
            registered = self._jobs.get(job_id)
        if registered is None:
            raise RunSkipped(f"job {job_id} is no longer declared by any container")
        spec = registered.spec
        secrets = secrets_of(spec, secret_values(ctx.settings))
        client = self._run_client(int(spec.timeout_s + CLIENT_MARGIN_S))
        try:
            if spec.kind == JobKind.RUN:
                target = Target("", spec.container)
                outcome = run_container(client, spec, ctx.cancelled, secrets)
            else:
                target = target_of(client, spec)
                _not_in_incident(ctx, target)
                outcome = run_exec(client, target, spec, ctx.cancelled, secrets)
        except docker_errors() as exc:
            self._drop_run_client(client)
            reason = f"the engine refused or failed: {exc}"
            self.alerts.failed(ctx.app, Failure(job_id, spec.container, reason,
                                                run_id=ctx.run_id), utcnow())
            raise RunFailed(reason) from None
        return self._outcome(ctx, job_id, target, outcome)

    def _run_client(self, timeout_s: int) -> Any:
        with self._lock:
            client = self._run_clients.get(timeout_s)
            if client is None:
                client = self._run_clients[timeout_s] = self.client_factory(
                    timeout_s=timeout_s, max_pool_size=RUN_POOL_SIZE)
            return client

    def _drop_run_client(self, client: Any) -> None:
        """A client that failed is made afresh for the next run (the engine may have
        restarted); runs using it meanwhile finish with it."""
        with self._lock:
            for timeout_s, shared in list(self._run_clients.items()):
                if shared is client:
                    del self._run_clients[timeout_s]

    def _outcome(self, ctx: JobContext, job_id: str, target: Target,
                 outcome: ExecOutcome) -> dict[str, Any]:
        result = outcome.as_result(target.name)
        if outcome.timed_out:
            reason = f"timed out (stopped: {outcome.stopped})"
        elif outcome.exit_code != 0:
            reason = f"exit code {outcome.exit_code}"
        else:
            self.alerts.succeeded(ctx.app, job_id, container=target.name, now=utcnow())
            return result
        self.alerts.failed(ctx.app, Failure(job_id, target.name, reason, outcome.output,
                                            ctx.run_id), utcnow())
        raise RunFailed(reason, result)


def set_aside(name: str) -> bool:
    """A name compose (``<id>_<name>``) or aegis's recreate gives a container it is
    replacing."""
    return is_aside(name) or COMPOSE_ASIDE.match(name) is not None


def _same(old: LabelJobSpec, new: LabelJobSpec) -> bool:
    """The same job, whichever replica of a service declares it."""
    return replace(old, container="", labels=()) == replace(new, container="", labels=())


def _not_in_incident(ctx: JobContext, target: Target) -> None:
    try:
        row = Containers(ctx.app.db).by_name(ctx.settings.host, target.name)
    except (DatabaseUnavailable, StoreError):
        return
    if row is not None and row.phase != Phase.OK and row.removed_at is None:
        raise RunSkipped(f"container {target.name} is in an open incident ({row.phase})")


def _record(runtime: Runtime, event_type: EventType, summary: str, importance: Importance,
            details: dict[str, Any]) -> None:
    try:
        runtime.store.record_event(event_type, summary, importance=importance,
                                   source="label_jobs", details=details)
    except StoreError as exc:
        get_logger().warning("label_job_event_not_recorded", event=event_type,
                             error=str(exc))


def _read(stream: Any, inbox: queue.Queue[Any]) -> None:
    try:
        for event in stream:
            inbox.put(event)
    except Exception as exc:  # a broken stream ends like a closed one
        get_logger().debug("label_jobs_stream_broken", error=str(exc))
    finally:
        inbox.put(None)
