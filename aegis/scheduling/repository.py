"""The owner of the ``jobs``, ``job_runs``, ``daemons`` and ``host_leases`` tables
(aegis/storage/sql/jobs.sql): claims and outcomes of runs, the jobs each daemon
advertises, heartbeats and the host's lease, and what the digest, the morning status,
/metrics, the status page and retention read of them.

Every query hands back frozen dataclasses (a run is a ``JobRun``, a job's row a
``JobRecord``, a daemon's a ``Heartbeat``...) or, for an aggregate, small dataclasses and
plain typed values: nothing above this module reads a row. ``Runs`` works on the pool or
inside a transaction (a spooled run is written back in the store's replay transaction).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from aegis.core.jsonable import to_json
from aegis.scheduling.heartbeat import Heartbeat
from aegis.scheduling.job_settings import MisfirePolicy
from aegis.storage.db import Json, Queries, Row
from aegis.storage.rows import PrunedBatch, as_rows, maybe_row


class RunStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    # the slot fell due while the job was still running
    SKIPPED = "skipped"
    # the slot fell due while no daemon could run it
    MISSED = "missed"
    # the daemon stopped (or died) before the run ended
    INTERRUPTED = "interrupted"


class RunTrigger(StrEnum):
    SCHEDULE = "schedule"
    # a slot missed while no daemon ran, run at start
    CATCH_UP = "catch_up"
    # ``aegis jobs run``, a task, the Python API
    MANUAL = "manual"


@dataclass(frozen=True)
class JobRun:
    """A row of ``job_runs``: one slot of a job, claimed by one daemon."""

    id: int
    job_id: str
    scope_key: str
    host: str
    trigger: RunTrigger
    scheduled_for: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status: RunStatus
    error: str | None
    result: Any
    instance_id: str | None

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class WantedSlot:
    """A slot a daemon wants to claim: one run of a job in its scope."""

    job_id: str
    scope_key: str
    trigger: RunTrigger
    scheduled_for: datetime
    # claimed even while a run of the job is still going
    overlap: bool = False


@dataclass(frozen=True)
class RunEnd:
    """How a claimed run ended, for its row. ``job_id`` and ``scheduled_for`` make sure
    the row of that id is this run's: after an asynchronous failover the server may
    issue the id again to another run (None in a spool record of an older version)."""

    run_id: int
    status: RunStatus
    at: datetime
    error: str | None
    result: Any
    job_id: str | None = None
    scheduled_for: datetime | None = None


@dataclass(frozen=True)
class MissedGap:
    """``count`` slots of a job, ``first`` to ``last``, that fell due and did not run, and
    why: recorded as one 'missed' run at the first (``last_slot`` reads ``last`` back)."""

    job_id: str
    scope_key: str
    first: datetime
    last: datetime
    count: int
    misfire: MisfirePolicy
    why: str


@dataclass(frozen=True)
class AdvertisedJob:
    """What a daemon says in ``jobs`` of a job it runs."""

    id: str
    description: str
    # its trigger, described ("daily at 06:00 Europe/Berlin")
    trigger: str
    timezone: str
    scope: str
    # where a job added at run time comes from ("label: CONTAINER"); None: a module's
    source: str | None
    next_run_at: datetime | None


@dataclass(frozen=True)
class JobRecord(AdvertisedJob):
    """A row of ``jobs``: a job some daemon advertised (or paused before any did), who
    last did and when, and whether it is paused."""

    seen_by: str | None
    seen_at: datetime | None
    paused: bool
    paused_at: datetime | None
    paused_by: str | None
    watched_since: datetime
    silent_since: datetime | None

    def seen_since(self, moment: datetime) -> bool:
        """Whether a daemon advertised the job after ``moment``."""
        return self.seen_at is not None and self.seen_at > moment


@dataclass(frozen=True)
class Watch:
    """What the silence watch (aegis/scheduling/deadlines.py) knows of one job: its pause
    flag, since when it is watched and silent, and its latest successful run on any host."""

    job_id: str
    paused: bool
    watched_since: datetime
    silent_since: datetime | None
    last_ok_slot: datetime | None
    last_ok_finished_at: datetime | None


@dataclass(frozen=True)
class JobWithLastRun:
    """A job as the status page lists it, with its latest run that was not skipped."""

    id: str
    trigger: str
    next_run_at: datetime | None
    paused: bool
    last_status: RunStatus | None
    last_scheduled_for: datetime | None


@dataclass(frozen=True)
class HostLease:
    """Who holds a host's lease (one daemon per host on the database), until when."""

    host: str
    instance_id: str
    pid: int
    taken_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class RunCounts:
    """One job's runs of a window, by status."""

    job_id: str
    ok: int = 0
    failed: int = 0
    timeout: int = 0
    missed: int = 0
    skipped: int = 0
    interrupted: int = 0
    running: int = 0


@dataclass(frozen=True)
class JobFailures:
    """One job's failed, timed-out and interrupted runs of a window, and the latest error."""

    job_id: str
    failures: int
    last_error: str


@dataclass(frozen=True)
class DurationHistogram:
    """How long one job's finished runs took: cumulative counts at each bound."""

    job_id: str
    # (upper bound in seconds, runs that took at most that long)
    buckets: tuple[tuple[float, int], ...]
    runs: int
    sum_s: float


@dataclass(frozen=True)
class JobState:
    """What /metrics tells of one job: silent or not, and how its latest slot ended."""

    job_id: str
    silent: bool
    # the latest slot that ran to an end or was missed; None: none yet
    last_status: RunStatus | None


@dataclass(frozen=True)
class Lateness:
    """How late one job's scheduled runs of a window started, in seconds."""

    job_id: str
    runs: int
    p50_s: float
    p95_s: float
    max_s: float


class Runs:
    """The named queries of ``jobs``, ``job_runs``, ``daemons`` and ``host_leases``."""

    def __init__(self, db: Queries) -> None:
        self.db = db

    # --- claiming and closing runs ---

    # the claim's facts, by keyword: who claims, when, and what it is running now
    def claim(self, wanted: Sequence[WantedSlot], *, host: str, now: datetime,  # noqa: PLR0913
              instance_id: str, live_since: datetime,
              running_ids: Sequence[int] = ()) -> list[JobRun]:
        """Claim slots in one statement; the runs this daemon won, some 'skipped' (an
        earlier run of the job still going: one of ``running_ids``, this daemon's runs in
        flight, or one on another daemon whose heartbeat is later than ``live_since``)."""
        return as_rows(JobRun, self.db.fetch_all(
            "claim_runs", job_ids=[w.job_id for w in wanted],
            scope_keys=[w.scope_key for w in wanted], triggers=[w.trigger for w in wanted],
            slots=[w.scheduled_for for w in wanted], overlaps=[w.overlap for w in wanted],
            host=host, now=now, instance_id=instance_id, live_since=live_since,
            running_ids=list(running_ids)))

    def record_missed(self, gap: MissedGap, *, host: str, now: datetime,
                      instance_id: str) -> None:
        self.db.execute("record_missed", job_id=gap.job_id, scope_key=gap.scope_key,
                        host=host, scheduled_for=gap.first, now=now, instance_id=instance_id,
                        error=f"missed: {gap.count} slot(s) {gap.why}",
                        result={"missed_slots": gap.count, "first": gap.first.isoformat(),
                                "last": gap.last.isoformat(), "misfire": gap.misfire})

    def finish(self, end: RunEnd) -> None:
        self.db.execute("finish_run", id=end.run_id, status=end.status, now=end.at,
                        error=end.error, result=Json(end.result), job_id=end.job_id,
                        scheduled_for=end.scheduled_for)

    def insert_record(self, *, result: Any, **params: Any) -> None:
        """A whole run made while the database was unreachable."""
        self.db.execute("insert_run_record", result=Json(result), **params)

    def interrupt_stale(self, host: str, instance_id: str, now: datetime) -> list[JobRun]:
        """Close as 'interrupted' the runs earlier daemons of ``host`` left running."""
        return as_rows(JobRun, self.db.fetch_all("interrupt_stale_runs", host=host,
                                                 instance_id=instance_id, now=now))

    # --- reading runs ---

    def get(self, run_id: int) -> JobRun | None:
        return maybe_row(JobRun, self.db.fetch_one("get_run", id=run_id))

    def last_slot(self, job_id: str, scope_key: str) -> datetime | None:
        row = self.db.fetch_one("last_slot", job_id=job_id, scope_key=scope_key)
        return None if row is None else row["scheduled_for"]

    def history(self, job_id: str | None, limit: int,
                before: tuple[datetime, int] | None = None) -> list[JobRun]:
        """Runs newest first, of one job or all; older than ``before`` (the
        (scheduled_for, id) of the last run of the previous page)."""
        before_time, before_id = before or (None, None)
        return as_rows(JobRun, self.db.fetch_all("job_history", job_id=job_id, limit=limit,
                                                 before_time=before_time,
                                                 before_id=before_id))

    def last_runs(self) -> dict[str, JobRun]:
        """Each job's latest run that was not skipped, by job id."""
        return {run.job_id: run for run in as_rows(JobRun, self.db.fetch_all("last_runs"))}

    # --- the jobs table ---

    def advertise(self, jobs: Sequence[AdvertisedJob], *, seen_by: str,
                  now: datetime) -> None:
        self.db.execute("upsert_jobs", ids=[j.id for j in jobs],
                        descriptions=[j.description for j in jobs],
                        triggers=[j.trigger for j in jobs],
                        timezones=[j.timezone for j in jobs], scopes=[j.scope for j in jobs],
                        sources=[j.source for j in jobs],
                        next_runs=[j.next_run_at for j in jobs], seen_by=seen_by, now=now)

    def forget_sourced_job(self, job_id: str, *, seen_by: str) -> bool:
        """Remove the row of a job added at run time, when ``seen_by`` advertised it last;
        True when it went."""
        return self.db.fetch_one("forget_sourced_job", id=job_id, seen_by=seen_by) is not None

    def job_records(self) -> dict[str, JobRecord]:
        """Every job some daemon advertised (or someone paused), by id."""
        return {job.id: job for job in as_rows(JobRecord, self.db.fetch_all("list_job_rows"))}

    def paused(self) -> set[str]:
        return {row["id"] for row in self.db.fetch_all("paused_jobs")}

    def set_paused(self, job_id: str, paused: bool, now: datetime, by: str) -> None:
        self.db.execute("set_paused", id=job_id, paused=paused, now=now, by=by)

    # --- the silence watch (aegis/scheduling/deadlines.py) ---

    def watched(self, job_ids: Sequence[str]) -> list[Watch]:
        return as_rows(Watch, self.db.fetch_all("watched_jobs", ids=list(job_ids)))

    def mark_silent(self, job_id: str, now: datetime, last_ok_slot: datetime | None,
                    live_since: datetime) -> bool:
        """True for the one caller that made the job silent (none while a run of it goes
        on a daemon whose heartbeat is later than ``live_since``)."""
        return self.db.fetch_one("mark_silent", id=job_id, now=now, last_ok_slot=last_ok_slot,
                                 live_since=live_since) is not None

    def mark_resumed(self, job_id: str, now: datetime) -> bool:
        """True for the one caller that ended the job's silence."""
        return self.db.fetch_one("mark_resumed", id=job_id, now=now) is not None

    # --- daemons ---

    def upsert_daemon(self, heartbeat: Heartbeat) -> None:
        """Record this daemon's heartbeat."""
        self.db.execute("upsert_daemon", **dataclasses.asdict(heartbeat))

    def take_host_lease(self, *, host: str, instance_id: str, home_id: str, pid: int,
                        ttl_s: float) -> bool:
        """The host's lease for ``ttl_s`` seconds: True when it is this daemon's now."""
        return self.db.fetch_one("take_host_lease", host=host, instance_id=instance_id,
                                 home_id=home_id, pid=pid, ttl_s=ttl_s) is not None

    def renew_host_lease(self, host: str, instance_id: str, ttl_s: float) -> bool:
        """False when the lease is no longer this daemon's."""
        return self.db.fetch_one("renew_host_lease", host=host, instance_id=instance_id,
                                 ttl_s=ttl_s) is not None

    def release_host_lease(self, host: str, instance_id: str) -> None:
        self.db.execute("release_host_lease", host=host, instance_id=instance_id)

    def host_lease(self, host: str) -> HostLease | None:
        return maybe_row(HostLease, self.db.fetch_one("host_lease", host=host))

    def daemons(self) -> list[Heartbeat]:
        """Each host's latest daemon, with its heartbeat."""
        return as_rows(Heartbeat, self.db.fetch_all("status_daemons"))

    def forget_host(self, host: str) -> int:
        """Take ``host`` out of the fleet (its daemons' rows, its lease); how many rows."""
        return len(self.db.fetch_all("forget_host", host=host))

    # --- what the digest, the morning status, /metrics and retention read ---

    def counts_by_job(self, start: datetime, end: datetime,
                      exclude_jobs: Sequence[str] = (), host: str | None = None
                      ) -> list[RunCounts]:
        """Runs of [start, end) per job, by status (on ``host``; None: all)."""
        return as_rows(RunCounts, self.db.fetch_all(
            "digest_job_runs", start=start, end=end, exclude_jobs=list(exclude_jobs),
            host=host))

    def failures_by_job(self, start: datetime, end: datetime, exclude_jobs: Sequence[str],
                        host: str | None = None) -> list[JobFailures]:
        """Jobs with failed, timed-out or interrupted runs in [start, end), most first."""
        return as_rows(JobFailures, self.db.fetch_all(
            "digest_job_failures", start=start, end=end, exclude_jobs=list(exclude_jobs),
            host=host))

    def counts_by_status(self, since: datetime) -> dict[tuple[str, RunStatus], int]:
        """Runs scheduled since ``since`` (all hosts), by (job id, status)."""
        return {(row["job_id"], RunStatus(row["status"])): int(row["runs"])
                for row in self.db.fetch_all("metrics_job_runs", since=since)}

    def durations(self, since: datetime, bounds_s: Sequence[float]
                  ) -> list[DurationHistogram]:
        """Per job, the histogram of how long its runs finished since ``since`` took."""
        by_job: dict[str, list[Row]] = {}
        for row in self.db.fetch_all("metrics_job_durations", since=since,
                                     bounds_s=list(bounds_s)):
            by_job.setdefault(row["job_id"], []).append(row)
        return [DurationHistogram(
            job_id=job_id, buckets=tuple((float(r["le"]), int(r["cumulative"])) for r in rows),
            runs=int(rows[0]["total"]), sum_s=float(rows[0]["sum_s"]))
            for job_id, rows in by_job.items()]

    def last_successes(self) -> dict[str, float]:
        """When each job's latest successful run finished (Unix time), by job id; a job
        without one is left out."""
        return {row["job_id"]: float(row["finished_at_s"])
                for row in self.db.fetch_all("metrics_last_success")
                if row["finished_at_s"] is not None}

    def job_states(self) -> list[JobState]:
        """Every known job's silence and the status of its latest slot, on any host."""
        return as_rows(JobState, self.db.fetch_all("metrics_job_states"))

    # --- what the status page reads ---

    def lateness(self, start: datetime, end: datetime) -> list[Lateness]:
        """Per job, how late its scheduled runs of [start, end) started."""
        return as_rows(Lateness, self.db.fetch_all("page_job_lateness", start=start, end=end))

    def jobs_with_last_run(self) -> list[JobWithLastRun]:
        return as_rows(JobWithLastRun, self.db.fetch_all("page_jobs"))

    def problem_runs(self, start: datetime, end: datetime, limit: int) -> list[JobRun]:
        """Failed, timed-out, missed and interrupted runs of [start, end), newest first."""
        return as_rows(JobRun, self.db.fetch_all("page_problem_runs", start=start, end=end,
                                                 limit=limit))

    def prune(self, cutoff: datetime, from_time: datetime, batch_rows: int) -> PrunedBatch:
        """Delete one batch of finished runs scheduled before ``cutoff``."""
        return PrunedBatch.of(self.db.fetch_one("cleanup_job_runs_batch", cutoff=cutoff,
                                                from_time=from_time, batch_rows=batch_rows))


def replay_run_record(tx: Queries, record: dict[str, Any]) -> None:
    """Insert a whole run recorded while the database was unreachable (spool kind
    ``job_run``)."""
    params = {key: record.get(key) for key in (
        "job_id", "scope_key", "host", "trigger", "status", "error", "instance_id")}
    for key in ("scheduled_for", "started_at", "finished_at"):
        params[key] = datetime.fromisoformat(record[key])
    Runs(tx).insert_record(result=record.get("result"), **params)


def replay_run_finish(tx: Queries, record: dict[str, Any]) -> None:
    """Close a claimed run whose end was recorded while the database was unreachable
    (spool kind ``job_run_finish``)."""
    slot = record.get("scheduled_for")  # absent in a record of an older version
    Runs(tx).finish(RunEnd(
        record["id"], RunStatus(record["status"]), datetime.fromisoformat(record["now"]),
        record.get("error"), record.get("result"), job_id=record.get("job_id"),
        scheduled_for=datetime.fromisoformat(slot) if slot else None))
