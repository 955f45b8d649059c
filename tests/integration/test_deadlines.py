"""Job deadlines against a real PostgreSQL, with an injected clock: a run past its
max_runtime records one job_overrun and goes on; a daily job with no success for its
expect_every goes silent once (one critical alert, whichever daemon sees it first) and
resumes once, counted on its zone's wall clock through a daylight-saving change."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aegis import api
from aegis.scheduling import triggers
from aegis.scheduling.deadlines import changes, watch_jobs
from aegis.scheduling.registry import JobContext, Registry
from aegis.scheduling.repository import Runs, RunTrigger
from aegis.scheduling.runs import Execution
from aegis.scheduling.scheduler import Scheduler
from tests.support.clock import Clock, t
from tests.support.rows import events_of_type, sql_rows


def alerts(app: api.Aegis) -> list[dict[str, Any]]:
    return sql_rows(app.db.dsn, "SELECT dedup_key, title, importance FROM outbox "
                    "WHERE channel = 'alerts' ORDER BY id")


def test_a_run_past_its_max_runtime_records_one_job_overrun_and_is_not_stopped(
        make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a")
    clock = Clock(t("2026-03-01 10:00"))
    started, release = threading.Event(), threading.Event()

    def blocks(ctx: JobContext) -> str:
        started.set()
        release.wait(10)
        return "done"

    registry = Registry()
    registry.add("blocks", blocks, triggers.daily("10:00"), max_runtime_s=30, timeout_s=600)
    scheduler = Scheduler(app, registry, instance_id="a-1", clock=clock)
    execution = scheduler.fire(registry.get("blocks"), clock.now, RunTrigger.SCHEDULE)
    assert isinstance(execution, Execution)
    assert started.wait(10)
    runner = scheduler.runner
    assert runner.next_deadline() == clock.now + timedelta(seconds=30)  # the loop wakes then

    clock.now += timedelta(seconds=29)
    assert runner.report_overruns() == []
    for seconds in (2, 1, 60, 120):  # every turn of the loop from 31 s on
        clock.now += timedelta(seconds=seconds)
        runner.report_overruns()
        assert runner.reap_timeouts() == []
    assert runner.next_deadline() == t("2026-03-01 10:10")  # only the timeout is left
    release.set()
    assert execution.done is not None
    assert execution.done.wait(10)

    [overrun] = events_of_type(app.db.dsn, "job_overrun")
    assert overrun["importance"] == "high"
    assert overrun["summary"] == "job blocks is still running after its max_runtime of 30s"
    assert overrun["details"]["max_runtime_s"] == 30
    assert overrun["details"]["run_id"] == execution.run_id
    [run] = sql_rows(app.db.dsn, "SELECT status, result FROM job_runs WHERE job_id = 'blocks'")
    assert (run["status"], run["result"]) == ("ok", "done")  # it ran to its end


class Nightly:
    """The loops of two daemons over several days, in 10-minute turns: run what is due,
    let the runs end, and watch for silent jobs, as each daemon's heartbeat does."""

    def __init__(self, make_app: Callable[..., api.Aegis], func: Callable[[JobContext], Any],
                 start: datetime) -> None:
        self.clock = Clock(start)
        self.daemons = []
        for host in ("host-a", "host-b"):
            app = make_app(host, AEGIS_TIMEZONE="Europe/Berlin")
            registry = Registry(app.settings.zone)
            registry.add("nightly", func, triggers.daily("22:00"), scope="cluster",
                         expect_every_s=24.5 * 3600)
            scheduler = Scheduler(app, registry, instance_id=f"{host}-1", clock=self.clock)
            scheduler.start()
            scheduler.advertise()
            self.daemons.append((app, registry, scheduler))
        self.app = self.daemons[0][0]

    def run_until(self, until: datetime) -> None:
        while self.clock.now < until:
            self.clock.now += timedelta(minutes=10)
            for _, _, scheduler in self.daemons:
                scheduler.run_pending()
            for _, _, scheduler in self.daemons:
                for execution in scheduler.runner.in_flight():
                    assert execution.done is not None
                    assert execution.done.wait(10)
            for app, registry, _ in self.daemons:
                watch_jobs(app, registry, self.clock.now)


def test_a_daily_job_failing_for_days_goes_silent_once_alerts_once_then_resumes(
        make_app: Callable[..., api.Aegis]) -> None:
    failing = threading.Event()

    def nightly(ctx: JobContext) -> None:
        if failing.is_set():
            raise RuntimeError("the backup target is full")

    loops = Nightly(make_app, nightly, t("2026-10-23 12:00"))
    loops.run_until(t("2026-10-24 12:00"))  # 22:00 CEST on the 23rd succeeds
    failing.set()
    loops.run_until(t("2026-10-27 12:00"))  # the 24th, 25th (a 25-hour day) and 26th fail
    app = loops.app
    [silent] = events_of_type(app.db.dsn, "job_silent")
    # no success since the 23rd's 22:00 slot: silent from 22:30 CEST on the 24th (20:30
    # UTC), found by the first turn after it
    assert t("2026-10-24 20:30") < silent["timestamp"] <= t("2026-10-24 20:40")
    assert silent["importance"] == "critical"
    assert silent["summary"] == ("job nightly has had no successful run since its "
                                 "2026-10-23 22:00 CEST slot (expected every 24h30m)")
    assert [(a["title"], a["importance"]) for a in alerts(app)] == [
        ("job nightly is silent", "critical")]
    assert events_of_type(app.db.dsn, "job_resumed") == []

    failing.clear()
    loops.run_until(t("2026-10-28 12:00"))  # the 27th's 22:00 CET run succeeds
    [resumed] = events_of_type(app.db.dsn, "job_resumed")
    assert t("2026-10-27 21:00") <= resumed["timestamp"] <= t("2026-10-27 21:10")
    assert resumed["importance"] == "medium"
    assert len(events_of_type(app.db.dsn, "job_silent")) == 1
    assert [a["title"] for a in alerts(app)] == ["job nightly is silent", "job nightly resumed"]
    statuses = [r["status"] for r in sql_rows(app.db.dsn, "SELECT status FROM job_runs "
                                              "ORDER BY scheduled_for")]
    assert statuses == ["ok", "failed", "failed", "failed", "ok"]


def test_a_daily_job_that_runs_every_night_never_goes_silent_across_the_25_hour_day(
        make_app: Callable[..., api.Aegis]) -> None:
    """Counted in real seconds, 24h30m after 22:00 CEST on the 24th is 21:30 CET on the
    25th, half an hour before that night's run: the wall clock says 22:30."""
    loops = Nightly(make_app, lambda ctx: None, t("2026-10-23 12:00"))
    loops.run_until(t("2026-10-27 12:00"))
    assert events_of_type(loops.app.db.dsn, "job_silent") == []
    assert len(sql_rows(loops.app.db.dsn, "SELECT 1 FROM job_runs WHERE status = 'ok'")) == 4


def test_a_paused_job_is_not_watched(make_app: Callable[..., api.Aegis]) -> None:
    loops = Nightly(make_app, lambda ctx: None, t("2026-10-23 12:00"))
    loops.app.scheduler.registry.add("nightly", lambda ctx: None, triggers.daily("22:00"))
    loops.app.scheduler.pause_job("nightly")
    for _, _, scheduler in loops.daemons:
        scheduler.refresh_paused()
    loops.run_until(t("2026-10-27 12:00"))
    assert events_of_type(loops.app.db.dsn, "job_silent") == []
    assert sql_rows(loops.app.db.dsn, "SELECT 1 FROM job_runs") == []


def test_of_two_daemons_that_saw_the_job_silent_at_once_one_records_it(
        make_app: Callable[..., api.Aegis]) -> None:
    """The watch reads, decides, then writes: two daemons can both decide. The write is
    guarded, so only one records job_silent; and none does once a newer success is in."""
    loops = Nightly(make_app, lambda ctx: None, t("2026-10-23 12:00"))
    (app_a, registry, _), (app_b, _, _) = loops.daemons
    job, now = registry.get("nightly"), t("2026-10-26 00:00")
    seen = Runs(app_a.db).watched(["nightly"])
    assert changes([job], {"nightly": seen[0]}, now) == ([(job, seen[0])], [])
    assert Runs(app_a.db).mark_silent("nightly", now, None, now) is True
    assert Runs(app_b.db).mark_silent("nightly", now, None, now) is False
    assert Runs(app_b.db).mark_resumed("nightly", now) is True
    assert Runs(app_a.db).mark_resumed("nightly", now) is False

    loops.run_until(t("2026-10-24 12:00"))  # a success comes in (the 23rd's 22:00 slot)
    assert Runs(app_a.db).mark_silent("nightly", now, None, now) is False
    assert Runs(app_a.db).mark_silent("nightly", now, t("2026-10-23 20:00"), now) is True


def test_a_job_running_on_another_live_daemon_does_not_go_silent(
        make_app: Callable[..., api.Aegis]) -> None:
    """Given until its run ends, on whichever host the run goes."""
    loops = Nightly(make_app, lambda ctx: None, t("2026-10-23 12:00"))
    (app_a, _, _), _ = loops.daemons
    now = t("2026-10-26 00:00")
    sql_rows(app_a.db.dsn, "INSERT INTO daemons (instance_id, host, pid, version, "
             "started_at, last_heartbeat_at, status) VALUES ('other-1', 'host-z', 1, 'v', "
             "%s, %s, 'running') RETURNING instance_id", now, now)
    sql_rows(app_a.db.dsn, "INSERT INTO job_runs (job_id, scope_key, host, trigger, "
             "scheduled_for, started_at, status, instance_id) VALUES ('nightly', '', "
             "'host-z', 'schedule', %s, %s, 'running', 'other-1') RETURNING id",
             t("2026-10-25 22:00"), t("2026-10-25 22:00"))
    live = now - timedelta(seconds=30)
    assert Runs(app_a.db).mark_silent("nightly", now, None, live) is False
    assert Runs(app_a.db).mark_silent("nightly", now, None, now + timedelta(seconds=1)) is True
