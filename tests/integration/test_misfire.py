"""Misfire policies against a real PostgreSQL, with an injected clock: what happens to the
slots that fell due while no daemon ran (run_once, skip, run_all and its bound), to the
slots a stalled loop slept through, and how ``aegis jobs history`` shows them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aegis import api
from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry
from aegis.scheduling.repository import RunTrigger
from aegis.scheduling.scheduler import RUN_ALL_LIMIT, Scheduler
from tests.support.cli import run_cli
from tests.support.clock import Clock
from tests.support.rows import sql_rows

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def history(app: api.Aegis, job_id: str) -> list[tuple[Any, ...]]:
    return [(r["scheduled_for"], r["trigger"], r["status"], (r["result"] or {}).get(
        "missed_slots")) for r in sql_rows(app.db.dsn, "SELECT * FROM job_runs WHERE "
                                           "job_id = %s ORDER BY scheduled_for", job_id)]


def drain_backlog(scheduler: Scheduler) -> None:
    """Let the runs in flight end and the backlog start, as the daemon's loop does."""
    while True:
        for execution in scheduler.runner.in_flight():
            assert execution.done is not None
            assert execution.done.wait(10)
        if not scheduler.run_backlog() and not scheduler.runner.in_flight():
            return


class Recorder:
    """A job function that records the trigger and slot of each run."""

    def __init__(self) -> None:
        self.slots: list[tuple[str, datetime]] = []
        self.lock = threading.Lock()

    def __call__(self, ctx: JobContext) -> None:
        with self.lock:
            self.slots.append((ctx.trigger, ctx.scheduled_for))


def previous_run(app: api.Aegis, registry: Registry, job_id: str, slot: datetime) -> None:
    """The last daemon ran ``slot`` of the job, then stopped."""
    old = Scheduler(app, registry, instance_id="old", clock=Clock(slot))
    old.fire(registry.get(job_id), slot, RunTrigger.SCHEDULE)
    drain_backlog(old)


def test_run_all_catches_up_each_slot_within_the_grace_one_after_another(app: api.Aegis) -> None:
    recorder = Recorder()
    registry = Registry()
    registry.add("daily", recorder, triggers.daily("06:00"), misfire="run_all",
                 misfire_grace_s=3 * 86400)
    previous_run(app, registry, "daily", datetime(2026, 3, 1, 6, 0, tzinfo=UTC))
    recorder.slots.clear()

    scheduler = Scheduler(app, registry, instance_id="new",
                          clock=Clock(datetime(2026, 3, 5, 7, 0, tzinfo=UTC)))
    scheduler.start()
    drain_backlog(scheduler)

    day = [datetime(2026, 3, d, 6, 0, tzinfo=UTC) for d in range(1, 6)]
    assert recorder.slots == [("catch_up", day[2]), ("catch_up", day[3]), ("catch_up", day[4])]
    assert history(app, "daily") == [
        (day[0], "schedule", "ok", None),
        (day[1], "catch_up", "missed", 1),  # 3 days and 1 hour ago: past the grace
        (day[2], "catch_up", "ok", None), (day[3], "catch_up", "ok", None),
        (day[4], "catch_up", "ok", None)]


def test_run_all_is_bounded(app: api.Aegis) -> None:
    recorder = Recorder()
    registry = Registry()
    registry.add("hourly", recorder, triggers.every(hours=1), misfire="run_all",
                 misfire_grace_s=7 * 86400)
    previous_run(app, registry, "hourly", T0)
    recorder.slots.clear()

    scheduler = Scheduler(app, registry, instance_id="new", clock=Clock(T0 + timedelta(days=2)))
    scheduler.start()
    drain_backlog(scheduler)

    assert len(recorder.slots) == RUN_ALL_LIMIT == 24
    assert recorder.slots[0] == ("catch_up", T0 + timedelta(days=1, hours=1))
    assert recorder.slots[-1] == ("catch_up", T0 + timedelta(days=2))
    rows = history(app, "hourly")
    assert rows[1] == (T0 + timedelta(hours=1), "catch_up", "missed", 24)
    assert len(rows) == 1 + 1 + 24


def test_skip_runs_nothing_missed_and_a_restart_does_not_count_the_gap_twice(
        app: api.Aegis) -> None:
    recorder = Recorder()
    registry = Registry()
    registry.add("every5", recorder, triggers.every(minutes=5), misfire="skip",
                 misfire_grace_s=3600)
    previous_run(app, registry, "every5", T0)
    recorder.slots.clear()

    for minutes in (6, 7, 11):  # three restarts; only 10:05 and 10:10 fell due meanwhile
        scheduler = Scheduler(app, registry, instance_id=f"new-{minutes}",
                              clock=Clock(T0 + timedelta(minutes=minutes)))
        scheduler.start()
        drain_backlog(scheduler)
        scheduler.unschedule_job("every5")

    assert recorder.slots == []
    assert history(app, "every5") == [
        (T0, "schedule", "ok", None),
        (T0 + timedelta(minutes=5), "catch_up", "missed", 1),
        (T0 + timedelta(minutes=10), "catch_up", "missed", 1)]


@pytest.mark.parametrize(("misfire", "expected"), [
    # the loop stalled from 10:00 to 10:17: the latest slot runs once, the ones it slept
    # through are one 'missed' row
    ("run_once", [(0, "catch_up", "ok", None), (5, "catch_up", "missed", 2),
                  (15, "schedule", "ok", None)]),
    ("skip", [(0, "catch_up", "ok", None), (5, "catch_up", "missed", 2),
              (15, "schedule", "ok", None)]),
    # run_all runs those within the grace (10 minutes), oldest first
    ("run_all", [(0, "catch_up", "ok", None), (5, "catch_up", "missed", 1),
                 (10, "catch_up", "ok", None), (15, "schedule", "ok", None)]),
])
def test_a_stalled_loop(
        app: api.Aegis, misfire: str, expected: list[tuple[int, str, str, int | None]]) -> None:
    recorder = Recorder()
    registry = Registry()
    registry.add("every5", recorder, triggers.every(minutes=5), misfire=misfire,
                 misfire_grace_s=600)
    clock = Clock(T0 + timedelta(milliseconds=5))
    scheduler = Scheduler(app, registry, instance_id="a-1", clock=clock)
    scheduler.start()  # runs the current slot, 10:00
    drain_backlog(scheduler)
    clock.now = T0 + timedelta(minutes=17)
    scheduler.run_pending()
    drain_backlog(scheduler)

    assert history(app, "every5") == [(T0 + timedelta(minutes=m), trigger, status, count)
                                      for m, trigger, status, count in expected]


def test_a_slot_due_while_the_catch_up_backlog_drains_waits_its_turn(app: api.Aegis) -> None:
    release = threading.Event()
    ran: list[datetime] = []

    def slow(ctx: JobContext) -> None:
        release.wait(10)
        ran.append(ctx.scheduled_for)

    registry = Registry()
    registry.add("slow", slow, triggers.every(minutes=5), misfire="run_all",
                 misfire_grace_s=3600)
    release.set()
    previous_run(app, registry, "slow", T0)
    release.clear()
    ran.clear()
    clock = Clock(T0 + timedelta(minutes=16))
    scheduler = Scheduler(app, registry, instance_id="new", clock=clock)
    scheduler.start()  # 10:05 runs, 10:10 and 10:15 wait
    clock.now = T0 + timedelta(minutes=20, seconds=1)
    scheduler.run_pending()  # 10:20 falls due behind them, not as an overlap
    release.set()
    drain_backlog(scheduler)

    minutes = [5, 10, 15, 20]
    assert ran == [T0 + timedelta(minutes=m) for m in minutes]
    assert [(r[0], r[2]) for r in history(app, "slow")] == [
        (T0, "ok"), *((T0 + timedelta(minutes=m), "ok") for m in minutes)]


def test_jobs_history_shows_a_gap_of_missed_slots(
        app: api.Aegis, aegis_env: dict[str, str]) -> None:
    registry = Registry()
    registry.add("every5", Recorder(), triggers.every(minutes=5))
    previous_run(app, registry, "every5", T0)
    scheduler = Scheduler(app, registry, instance_id="new",
                          clock=Clock(T0 + timedelta(hours=1, minutes=1)))
    scheduler.start()
    drain_backlog(scheduler)
    result = run_cli("jobs", "history", "every5", env={**aegis_env,
                                                       "AEGIS_TIMEZONE": "Europe/Berlin"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    missed = next(line for line in lines if " missed " in line)
    assert "2026-03-01 11:05:00 +01:00" in missed  # the gap's first slot, in Berlin
    assert "11 slots missed, to 2026-03-01 11:55:00 +01:00" in missed
