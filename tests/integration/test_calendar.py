"""Calendar-correct scheduling against a real PostgreSQL: the real scheduler on an injected
clock across daylight-saving transitions (each slot claimed and run exactly once, at its
UTC instant, by two hosts), the daemon planning the morning status in AEGIS_TIMEZONE, and
the journal's local day."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aegis import api
from aegis.core.config import load_settings
from aegis.scheduling import triggers
from aegis.scheduling.daemon import Daemon, RunMode
from aegis.scheduling.registry import JobContext, Registry
from aegis.scheduling.repository import RunTrigger
from aegis.scheduling.scheduler import Scheduler
from aegis.scheduling.triggers import Trigger
from jobs import evening_summary
from tests.support.clock import Clock, t
from tests.support.rows import sql_rows
from tests.support.scheduling import wait_runs


def drive(schedulers: list[Scheduler], clock: Clock, until: datetime,
          step_s: float | None) -> None:
    """Run the daemons' loops up to ``until``: each tick wakes at the next due slot (as the
    daemon sleeps until it), or, with ``step_s``, every ``step_s`` seconds whatever is due
    (a loop that wakes late)."""
    while True:
        if step_s is None:
            due = min(d for s in schedulers if (d := s.next_due()) is not None)
            tick = due + timedelta(milliseconds=3)
        else:
            tick = clock.now + timedelta(seconds=step_s)
        if tick >= until:
            return
        clock.now = tick
        for scheduler in schedulers:
            scheduler.run_pending()
        for scheduler in schedulers:
            wait_runs(scheduler)


@dataclass(frozen=True)
class Transition:
    """A job's trigger on the wall clock of ``timezone`` from ``start`` to ``end`` (UTC),
    and the UTC instants of the slots it must run, once each."""

    timezone: str
    trigger: Trigger
    start: str
    end: str
    expected: list[str]

    @property
    def id(self) -> str:
        return f"{self.timezone}-{type(self.trigger).__name__.lower()}-{self.start[:10]}"


CASES: list[tuple[str, Trigger, str, str, list[str]]] = [
    # (AEGIS_TIMEZONE, trigger, start, end, the UTC slots)
    ("Europe/Berlin", triggers.daily("02:30"), "2026-03-27 12:00", "2026-03-31 00:00",
     ["2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"]),
    ("Europe/Berlin", triggers.daily("02:30"), "2026-10-23 12:00", "2026-10-27 00:00",
     ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"]),
    ("America/New_York", triggers.daily("02:30"), "2026-03-07 00:00", "2026-03-10 00:00",
     ["2026-03-07 07:30", "2026-03-08 07:00", "2026-03-09 06:30"]),
    ("America/New_York", triggers.daily("01:30"), "2026-10-31 00:00", "2026-11-03 00:00",
     ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"]),
    ("Australia/Lord_Howe", triggers.daily("01:45"), "2026-04-03 00:00", "2026-04-06 00:00",
     ["2026-04-03 14:45", "2026-04-04 14:45", "2026-04-05 15:15"]),
    ("Australia/Lord_Howe", triggers.daily("02:15"), "2026-10-02 00:00", "2026-10-05 00:00",
     ["2026-10-02 15:45", "2026-10-03 15:30", "2026-10-04 15:15"]),
    ("Pacific/Apia", triggers.daily("06:00"), "2011-12-28 00:00", "2012-01-01 00:00",
     ["2011-12-28 16:00", "2011-12-29 16:00", "2011-12-30 10:00", "2011-12-30 16:00",
      "2011-12-31 16:00"]),
    ("America/New_York", triggers.cron("*/30 1-2 * * *"), "2026-11-01 04:00",
     "2026-11-01 09:00",
     ["2026-11-01 05:00", "2026-11-01 05:30", "2026-11-01 07:00", "2026-11-01 07:30"]),
    ("Europe/Berlin", triggers.cron("0,30 1-3 * * *"), "2026-03-28 23:00", "2026-03-29 03:00",
     ["2026-03-29 00:00", "2026-03-29 00:30", "2026-03-29 01:00", "2026-03-29 01:30"]),
    # an interval counts real seconds (and runs its current slot at start)
    ("Europe/Berlin", triggers.every(hours=1), "2026-10-24 23:00", "2026-10-25 03:30",
     ["2026-10-24 23:00", "2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00",
      "2026-10-25 03:00"]),
]


TRANSITIONS = [Transition(*case) for case in CASES]


@pytest.mark.parametrize("step_s", [None, 420.0], ids=["on-time", "late-loop"])
@pytest.mark.parametrize("case", TRANSITIONS, ids=[case.id for case in TRANSITIONS])
def test_each_slot_runs_once_at_its_utc_instant_across_the_transition(
        make_app: Callable[..., api.Aegis], case: Transition, step_s: float | None) -> None:
    clock = Clock(t(case.start))
    ran: Counter[datetime] = Counter()
    lateness_s: list[float] = []
    lock = threading.Lock()

    def job(ctx: JobContext) -> None:
        with lock:
            ran[ctx.scheduled_for] += 1
            lateness_s.append((ctx.now - ctx.scheduled_for).total_seconds())

    schedulers = []
    for host in ("host-a", "host-b"):  # two daemons sharing the database
        app = make_app(host, AEGIS_TIMEZONE=case.timezone)
        registry = Registry(app.settings.zone)  # as load_jobs builds it
        registry.add("calendar", job, case.trigger, scope="cluster", misfire_grace_s=3600)
        scheduler = Scheduler(app, registry, instance_id=f"{host}-1", clock=clock)
        scheduler.start()
        schedulers.append(scheduler)
    wait_runs(schedulers[0])
    wait_runs(schedulers[1])
    drive(schedulers, clock, t(case.end), step_s)

    slots = [t(text) for text in case.expected]
    assert sorted(ran) == slots
    assert set(ran.values()) == {1}
    assert all(0 <= late < (step_s or 1) for late in lateness_s)
    rows = sql_rows(schedulers[0].runtime.db.dsn,
                    "SELECT scheduled_for, status FROM job_runs WHERE job_id = 'calendar' "
                    "ORDER BY scheduled_for")
    assert [(r["scheduled_for"], r["status"]) for r in rows] == [(s, "ok") for s in slots]


def advertised_next_runs(app: api.Aegis) -> dict[str, Any]:
    return {r["id"]: r for r in sql_rows(app.db.dsn, "SELECT id, next_run_at, trigger, "
                                                     "timezone FROM jobs")}


@pytest.mark.parametrize(("now", "morning_status_at", "evening_summary_at"), [
    ("2026-01-10 12:00", "2026-01-11 05:00", "2026-01-10 21:00"),  # CET, UTC+1
    ("2026-07-10 12:00", "2026-07-11 04:00", "2026-07-10 20:00"),  # CEST, UTC+2
    ("2026-03-28 12:00", "2026-03-29 04:00", "2026-03-28 21:00"),  # the night it changes
])
def test_run_once_in_berlin_plans_the_daily_jobs_in_local_time(
        aegis_env: dict[str, str], now: str, morning_status_at: str,
        evening_summary_at: str) -> None:
    settings = load_settings({**aegis_env, "AEGIS_TIMEZONE": "Europe/Berlin",
                              "AEGIS_REMEDIATION": "off"})
    with api.connect(settings, migrate=False) as app:
        daemon = Daemon(app, app.registry, RunMode(once=True, handle_signals=False),
                        clock=Clock(t(now)))
        assert daemon.run() == 0
        jobs = advertised_next_runs(app)
    assert jobs["morning_status"]["next_run_at"] == t(morning_status_at)
    assert jobs["evening_summary"]["next_run_at"] == t(evening_summary_at)
    assert jobs["morning_status"]["trigger"] == "daily at 06:00 Europe/Berlin"
    assert {jobs[j]["timezone"] for j in jobs} == {"Europe/Berlin"}


def test_the_evening_summary_covers_the_local_day_and_names_its_file_after_it(
        make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a", AEGIS_TIMEZONE="America/New_York")
    for stamp in ("2026-11-01 03:59", "2026-11-01 04:00", "2026-11-02 04:59",
                  "2026-11-02 05:00"):
        app.store.record_event("deploy_note", stamp, timestamp=t(stamp))
    # 22:00 EST on 2026-11-01, a 25-hour day: 04:00 UTC to 05:00 UTC the next day
    slot = t("2026-11-02 03:00")
    ctx = JobContext(job_id="evening_summary", run_id=None, trigger=RunTrigger.SCHEDULE,
                     scheduled_for=slot, now=slot, app=app, log=app.store.log,
                     cancelled=threading.Event())
    result = evening_summary.evening_summary(ctx)
    assert result["date"] == "2026-11-01"
    assert result["events"] == 2  # 04:00 and 04:59 the next day; not 03:59, not 05:00
    path = Path(result["path"])
    assert path.name == "2026-11-01.md"
    assert ("America/New_York day 2026-11-01 00:00 to 2026-11-02 00:00, host host-a."
            in path.read_text())


def test_the_python_api_takes_a_jobs_time_zone_and_lists_it(
        make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a", AEGIS_TIMEZONE="Europe/Berlin")
    app.scheduler.add_job(lambda ctx: None, id="tokyo_report", trigger=triggers.daily("09:00"),
                          timezone="Asia/Tokyo", misfire="skip", max_runtime_s=60,
                          expect_every_s=25 * 3600)
    app.scheduler.add_job(lambda ctx: None, id="local_report", trigger=triggers.daily("09:00"))
    listed = {job.id: job for job in app.scheduler.list_jobs()}
    tokyo, local = listed["tokyo_report"], listed["local_report"]
    assert (tokyo.trigger, tokyo.timezone) == ("daily at 09:00 Asia/Tokyo", "Asia/Tokyo")
    assert (local.trigger, local.timezone) == ("daily at 09:00 Europe/Berlin", "Europe/Berlin")
    assert tokyo.next_run is not None
    assert local.next_run is not None
    assert tokyo.next_run.astimezone(ZoneInfo("Asia/Tokyo")).hour == 9
    assert local.next_run.astimezone(ZoneInfo("Europe/Berlin")).hour == 9
    assert tokyo.to_json()["next_run"].endswith("+00:00")
    assert listed["morning_status"].trigger == "daily at 06:00 Europe/Berlin"
