"""The owner of the ``jobs``, ``job_runs``, ``daemons`` and ``host_leases`` tables
(aegis/storage/sql/jobs.sql): claims and outcomes of runs, the jobs each daemon
advertises, heartbeats and the host's lease, and what the digest, the morning status,
/metrics and retention read of them.

``Runs`` works on the pool or inside a transaction (a spooled run is written back in the
store's replay transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from aegis.core.jsonable import to_json
from aegis.storage.db import Json, Queries, Row


class RunStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"  # the slot fell due while the job was still running
    MISSED = "missed"  # the slot fell due while no daemon could run it
    INTERRUPTED = "interrupted"  # the daemon stopped (or died) before the run ended


class RunTrigger(StrEnum):
    SCHEDULE = "schedule"
    CATCH_UP = "catch_up"  # a slot missed while no daemon ran, run at start
    MANUAL = "manual"  # ``aegis jobs run``, a task, the Python API


@dataclass(frozen=True)
class JobRun:
    id: int
    job_id: str
    scope_key: str
    host: str
    trigger: str
    scheduled_for: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status: str
    error: str | None
    result: Any
    instance_id: str | None

    @classmethod
    def from_row(cls, row: Row) -> JobRun:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class Runs:
    """The named queries of ``jobs``, ``job_runs`` and ``daemons``."""

    def __init__(self, db: Queries) -> None:
        self.db = db

    # --- claiming and closing runs ---

    def claim(self, *, job_ids: Sequence[str], scope_keys: Sequence[str],
              triggers: Sequence[str], slots: Sequence[datetime], host: str, now: datetime,
              instance_id: str, live_since: datetime) -> list[Row]:
        """Claim slots in one statement; the rows this daemon won (some 'skipped')."""
        return self.db.fetch_all("claim_runs", job_ids=list(job_ids),
                                 scope_keys=list(scope_keys), triggers=list(triggers),
                                 slots=list(slots), host=host, now=now,
                                 instance_id=instance_id, live_since=live_since)

    def record_missed(self, *, job_id: str, scope_key: str, host: str,
                      scheduled_for: datetime, now: datetime, instance_id: str, error: str,
                      result: dict[str, Any]) -> None:
        self.db.execute("record_missed", job_id=job_id, scope_key=scope_key, host=host,
                        scheduled_for=scheduled_for, now=now, instance_id=instance_id,
                        error=error, result=result)

    def finish(self, run_id: int, status: str, now: datetime, error: str | None,
               result: Any) -> None:
        self.db.execute("finish_run", id=run_id, status=status, now=now, error=error,
                        result=Json(result))

    def insert_record(self, *, result: Any, **params: Any) -> None:
        """A whole run made while the database was unreachable."""
        self.db.execute("insert_run_record", result=Json(result), **params)

    def interrupt_stale(self, host: str, instance_id: str, now: datetime) -> list[Row]:
        """Close as 'interrupted' the runs earlier daemons of ``host`` left running."""
        return self.db.fetch_all("interrupt_stale_runs", host=host, instance_id=instance_id,
                                 now=now)

    # --- reading runs ---

    def get(self, run_id: int) -> JobRun | None:
        row = self.db.fetch_one("get_run", id=run_id)
        return None if row is None else JobRun.from_row(row)

    def last_slot(self, job_id: str, scope_key: str) -> datetime | None:
        row = self.db.fetch_one("last_slot", job_id=job_id, scope_key=scope_key)
        return None if row is None else row["scheduled_for"]

    def history(self, job_id: str | None, limit: int,
                before: tuple[datetime, int] | None = None) -> list[JobRun]:
        """Runs newest first, of one job or all; older than ``before`` (the
        (scheduled_for, id) of the last run of the previous page)."""
        before_time, before_id = before or (None, None)
        return [JobRun.from_row(row) for row in
                self.db.fetch_all("job_history", job_id=job_id, limit=limit,
                                  before_time=before_time, before_id=before_id)]

    def last_runs(self) -> dict[str, Row]:
        """Each job's latest run: job_id -> scheduled_for, status."""
        return {row["job_id"]: row for row in self.db.fetch_all("last_runs")}

    # --- the jobs table ---

    def advertise(self, *, ids: Sequence[str], descriptions: Sequence[str],
                  triggers: Sequence[str], timezones: Sequence[str], scopes: Sequence[str],
                  next_runs: Sequence[datetime | None], seen_by: str, now: datetime) -> None:
        self.db.execute("upsert_jobs", ids=list(ids), descriptions=list(descriptions),
                        triggers=list(triggers), timezones=list(timezones),
                        scopes=list(scopes), next_runs=list(next_runs), seen_by=seen_by,
                        now=now)

    def job_rows(self) -> dict[str, Row]:
        """Every job some daemon advertised: id -> its row."""
        return {row["id"]: row for row in self.db.fetch_all("list_job_rows")}

    def paused(self) -> set[str]:
        return {row["id"] for row in self.db.fetch_all("paused_jobs")}

    def set_paused(self, job_id: str, paused: bool, now: datetime, by: str) -> None:
        self.db.execute("set_paused", id=job_id, paused=paused, now=now, by=by)

    # --- the silence watch (aegis/scheduling/deadlines.py) ---

    def watched(self, job_ids: Sequence[str]) -> list[Row]:
        """id, paused, watched_since, silent_since, last_ok_slot, last_ok_finished_at."""
        return self.db.fetch_all("watched_jobs", ids=list(job_ids))

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

    def upsert_daemon(self, *, instance_id: str, host: str, pid: int, version: str,
                      started_at: datetime, now: datetime, status: str) -> None:
        self.db.execute("upsert_daemon", instance_id=instance_id, host=host, pid=pid,
                        version=version, started_at=started_at, now=now, status=status)

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

    def host_lease(self, host: str) -> Row | None:
        return self.db.fetch_one("host_lease", host=host)

    def daemons(self) -> list[Row]:
        """Each host's latest daemon: host, instance_id, pid, version, status, started_at,
        last_heartbeat_at."""
        return self.db.fetch_all("status_daemons")

    def forget_host(self, host: str) -> int:
        """Take ``host`` out of the fleet (its daemons' rows, its lease); how many rows."""
        return len(self.db.fetch_all("forget_host", host=host))

    # --- what the digest, the morning status, /metrics and retention read ---

    def counts_by_job(self, start: datetime, end: datetime,
                      exclude_jobs: Sequence[str] = (), host: str | None = None
                      ) -> list[Row]:
        """Runs of [start, end) per job, one column per status (on ``host``; None: all)."""
        return self.db.fetch_all("digest_job_runs", start=start, end=end,
                                 exclude_jobs=list(exclude_jobs), host=host)

    def failures_by_job(self, start: datetime, end: datetime,
                        exclude_jobs: Sequence[str], host: str | None = None) -> list[Row]:
        return self.db.fetch_all("digest_job_failures", start=start, end=end,
                                 exclude_jobs=list(exclude_jobs), host=host)

    def counts_by_status(self, since: datetime) -> list[Row]:
        return self.db.fetch_all("metrics_job_runs", since=since)

    def durations(self, since: datetime, bounds_s: Sequence[float]) -> list[Row]:
        """Cumulative histogram buckets of run durations per job."""
        return self.db.fetch_all("metrics_job_durations", since=since,
                                 bounds_s=list(bounds_s))

    def last_successes(self) -> list[Row]:
        return self.db.fetch_all("metrics_last_success")

    # --- what the status page reads ---

    def lateness(self, start: datetime, end: datetime) -> list[Row]:
        """Per job, (runs, p50_s, p95_s, max_s) of how late its scheduled runs of
        [start, end) started."""
        return self.db.fetch_all("page_job_lateness", start=start, end=end)

    def jobs_with_last_run(self) -> list[Row]:
        """Every job row (id, trigger, next_run_at, paused) with the status and slot of
        its latest run that was not skipped."""
        return self.db.fetch_all("page_jobs")

    def problem_runs(self, start: datetime, end: datetime, limit: int) -> list[JobRun]:
        """Failed, timed-out, missed and interrupted runs of [start, end), newest first."""
        return [JobRun.from_row(row) for row in
                self.db.fetch_all("page_problem_runs", start=start, end=end, limit=limit)]

    def prune(self, cutoff: datetime, from_time: datetime, batch_rows: int) -> Row | None:
        """Delete one batch of finished runs scheduled before ``cutoff``."""
        return self.db.fetch_one("cleanup_job_runs_batch", cutoff=cutoff,
                                 from_time=from_time, batch_rows=batch_rows)


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
    Runs(tx).finish(record["id"], record["status"], datetime.fromisoformat(record["now"]),
                    record.get("error"), record.get("result"))
