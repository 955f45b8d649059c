"""The silence watch: a dead man's switch from inside, checked by the daemon's own loop.

A job with ``expect_every`` that has had no successful run, on any host, for that long is
*silent*: one ``job_silent`` event (critical) with one alert, recorded by whichever
daemon sees it first; when it succeeds again, one ``job_resumed``. The time is counted as
the job's trigger counts it: on the wall clock of its zone for a daily, weekly or cron
job (24h30m after the 22:00 slot is 22:30 the next day, whatever the clocks did in
between), in real seconds for an interval job. It runs from the slot of the latest
successful run, or from when the watch started (the job first seen, resumed, unpaused)
if that is later. Paused jobs are not watched. The silence is a column of ``jobs``
(``silent_since``), so the alert is sent once however many daemons watch and restart.

A run going past its job's ``max_runtime`` is the Runner's to report (``job_overrun``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from aegis.core.jsonable import jsonable
from aegis.scheduling.heartbeat import live_since
from aegis.scheduling.registry import Job
from aegis.scheduling.repository import Runs, Watch
from aegis.scheduling.triggers import Trigger, later_on_clock
from aegis.storage.events import Event, EventType, Importance
from aegis.storage.outbox import Channel, Notification
from aegis.storage.runtime import Runtime
from aegis.storage.store import insert_event


def silent_after(trigger: Trigger, expect_every_s: float, watch: Watch) -> datetime:
    """When the job goes silent if no successful run comes first."""
    since = watch.watched_since
    if watch.last_ok_slot is not None and watch.last_ok_slot > since:
        since = watch.last_ok_slot
    return later_on_clock(trigger, since, expect_every_s)


def changes(jobs: Iterable[Job], watches: Mapping[str, Watch], now: datetime
            ) -> tuple[list[tuple[Job, Watch]], list[tuple[Job, Watch]]]:
    """The watched jobs that go silent at ``now``, and the silent ones that succeeded
    since they went silent."""
    silent, resumed = [], []
    for job in jobs:
        watch = watches.get(job.id)
        if watch is None or job.expect_every_s is None:
            continue
        if watch.silent_since is not None:
            finished = watch.last_ok_finished_at
            if finished is not None and finished > watch.silent_since:
                resumed.append((job, watch))
        elif not watch.paused and now > silent_after(job.trigger, job.expect_every_s, watch):
            silent.append((job, watch))
    return silent, resumed


def watch_jobs(runtime: Runtime, jobs: Iterable[Job], now: datetime) -> list[Event]:
    """Record ``job_silent`` and ``job_resumed`` where the watch changed; the events this
    daemon recorded (another daemon may have recorded the same change first)."""
    watched = [job for job in jobs if job.enabled and job.expect_every_s is not None]
    if not watched:
        return []
    watches = Runs(runtime.db).watched([job.id for job in watched])
    silent, resumed = changes(watched, {watch.job_id: watch for watch in watches}, now)
    recorded = []
    alive_since = live_since(now, runtime.settings.heartbeat_interval_s)
    for job, watch in silent:
        event, notify = silent_event(runtime, job, watch, now)
        with runtime.db.transaction() as tx:
            won = Runs(tx).mark_silent(job.id, now, watch.last_ok_slot, alive_since)
            if won:
                insert_event(tx, event, notify)
        if won:
            recorded.append(event)
    for job, watch in resumed:
        event, notify = resumed_event(runtime, job, watch, now)
        with runtime.db.transaction() as tx:
            won = Runs(tx).mark_resumed(job.id, now)
            if won:
                insert_event(tx, event, notify)
        if won:
            recorded.append(event)
    for event in recorded:
        runtime.store.log_event(event)
    return recorded


def _span(seconds: float) -> str:
    """88200 -> '24h30m'."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, rest = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (rest, "s"))
                   if n) or "0s"


def _local(job: Job, moment: datetime | None) -> str:
    return "never" if moment is None else moment.astimezone(job.zone).strftime(
        "%Y-%m-%d %H:%M %Z")


def silent_event(runtime: Runtime, job: Job, watch: Watch, now: datetime
                 ) -> tuple[Event, Notification]:
    assert job.expect_every_s is not None
    expected = _span(job.expect_every_s)
    since = (f"since its {_local(job, watch.last_ok_slot)} slot"
             if watch.last_ok_slot is not None
             else f"since it was first watched, {_local(job, watch.watched_since)}")
    event = runtime.store.new_event(
        EventType.JOB_SILENT, f"job {job.id} has had no successful run {since} "
        f"(expected every {expected})", importance=Importance.CRITICAL, source="scheduler",
        timestamp=now,
        details=jsonable({"job": job.id, "expect_every_s": job.expect_every_s,
                          "last_ok_slot": watch.last_ok_slot, "timezone": job.zone.key,
                          "last_ok_finished_at": watch.last_ok_finished_at,
                          "deadline": silent_after(job.trigger, job.expect_every_s, watch)}))
    notify = Notification(
        channel=Channel.ALERTS, title=f"job {job.id} is silent",
        body=f"No successful run of {job.id} on any host {since}; it is expected every "
             f"{expected}. `aegis jobs history {job.id}` shows its recent runs.",
        importance=Importance.CRITICAL, fields={"job": job.id, "expected every": expected},
        dedup_key=f"job_silent:{job.id}:{now.isoformat()}")
    return event, notify


def resumed_event(runtime: Runtime, job: Job, watch: Watch, now: datetime
                  ) -> tuple[Event, Notification]:
    event = runtime.store.new_event(
        EventType.JOB_RESUMED, f"job {job.id} ran successfully again (silent since "
        f"{_local(job, watch.silent_since)})", importance=Importance.MEDIUM, source="scheduler",
        timestamp=now,
        details=jsonable({"job": job.id, "silent_since": watch.silent_since,
                          "last_ok_slot": watch.last_ok_slot, "timezone": job.zone.key}))
    notify = Notification(
        channel=Channel.ALERTS, title=f"job {job.id} resumed",
        body=f"{job.id} ran successfully again; it had been silent since "
             f"{_local(job, watch.silent_since)}.",
        importance=Importance.MEDIUM, fields={"job": job.id},
        dedup_key=f"job_resumed:{job.id}:{jsonable(watch.silent_since)}")
    return event, notify
