"""The scheduler in-process against a real PostgreSQL, with an injected clock."""

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from aegis import api
from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry
from aegis.scheduling.repository import JobRun, RunTrigger
from aegis.scheduling.runs import Execution
from aegis.scheduling.scheduler import Scheduler, Slot
from aegis.storage.runtime import Runtime
from tests.support.clock import Clock
from tests.support.rows import sql_rows
from tests.support.scheduling import wait_runs
from tests.support.waiting import wait_for

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def runs(app: Runtime, job_id: str) -> list[dict[str, Any]]:
    return sql_rows(app.db.dsn, "SELECT * FROM job_runs WHERE job_id = %s "
                    "ORDER BY scheduled_for, host", job_id)


def test_two_hosts_run_a_cluster_job_once_per_slot_and_a_host_job_once_per_host(
        make_app: Callable[..., api.Aegis]) -> None:
    clock = Clock(T0 + timedelta(milliseconds=10))
    calls: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()

    def counting(kind: str) -> Callable[[JobContext], None]:
        def job(ctx: JobContext) -> None:
            with lock:
                calls[(kind, ctx.scheduled_for.isoformat())] += 1
        return job

    schedulers = []
    for host in ("host-a", "host-b"):
        app = make_app(host)
        registry = Registry()
        registry.add("cluster_tick", counting("cluster"), triggers.every(seconds=1),
                     scope="cluster")
        registry.add("host_tick", counting("host"), triggers.every(seconds=1), scope="host")
        scheduler = Scheduler(app, registry, instance_id=f"{host}-1", clock=clock)
        scheduler.start()
        schedulers.append(scheduler)
    for scheduler in schedulers:  # the catch-up runs first, or the next slot overlaps them
        wait_runs(scheduler)
    for _ in range(20):
        clock.advance(1)
        for scheduler in schedulers:
            scheduler.run_pending()
        for scheduler in schedulers:
            wait_runs(scheduler)

    cluster_slots = {slot for (kind, slot) in calls if kind == "cluster"}
    assert len(cluster_slots) == 21  # the current slot at start plus 20 ticks
    assert all(calls[("cluster", slot)] == 1 for slot in cluster_slots)
    assert all(calls[("host", slot)] == 2 for slot in cluster_slots)
    cluster_rows = runs(schedulers[0].runtime, "cluster_tick")
    assert len(cluster_rows) == 21
    assert {row["status"] for row in cluster_rows} == {"ok"}
    host_rows = runs(schedulers[0].runtime, "host_tick")
    assert Counter(row["host"] for row in host_rows) == {"host-a": 21, "host-b": 21}


def test_overlap_is_recorded_skipped_and_a_timeout_blocks_nothing(
        make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a")
    clock = Clock(T0)
    release = threading.Event()
    registry = Registry()

    def stuck(ctx: JobContext) -> None:
        release.wait(10)

    registry.add("stuck", stuck, triggers.every(seconds=10), timeout_s=15)
    registry.add("quick", lambda ctx: {"ok": True}, triggers.every(seconds=10))
    scheduler = Scheduler(app, registry, instance_id="a-1", clock=clock)
    scheduler.start()  # both run their current slot
    for execution in scheduler.runner.in_flight():
        if execution.job.id == "quick":  # only stuck may overlap its next slot
            assert execution.done is not None
            assert execution.done.wait(10)
    # stuck's timeout counts from its start, on a job thread of its own time
    wait_for(lambda: all(e.started_at for e in scheduler.runner.in_flight()), 10)
    clock.advance(10)
    scheduler.run_pending()  # stuck's next slot overlaps the first run
    first, second = runs(app, "stuck")
    assert first["status"] == "running"
    assert second["status"] == "skipped"
    assert "overlap" in second["error"]

    clock.advance(6)  # past the 15 s timeout of the first run
    expired = scheduler.runner.reap_timeouts()
    assert [e.job.id for e in expired] == ["stuck"]
    assert expired[0].context.cancelled.is_set()
    release.set()
    statuses = [row["status"] for row in runs(app, "stuck")]
    assert statuses == ["timeout", "skipped"]
    assert [row["status"] for row in runs(app, "quick")] == ["ok", "ok"]
    timeouts = app.memory.query(since=T0 - timedelta(days=1), event_type="job_timeout")
    assert len(timeouts) == 1
    assert timeouts[0].importance == "high"


def test_a_failing_job_is_recorded_and_does_not_stop_others(
        make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a")
    clock = Clock(T0)
    registry = Registry()

    def boom(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    registry.add("boom", boom, triggers.every(seconds=5))
    registry.add("fine", lambda ctx: {"n": 1}, triggers.every(seconds=5))
    scheduler = Scheduler(app, registry, instance_id="a-1", clock=clock)
    scheduler.start()
    wait_runs(scheduler)
    for _ in range(2):
        clock.advance(5)
        scheduler.run_pending()
        wait_runs(scheduler)
    boom_runs = runs(app, "boom")
    assert [r["status"] for r in boom_runs] == ["failed"] * 3
    assert boom_runs[0]["error"] == "RuntimeError: boom"
    assert [r["status"] for r in runs(app, "fine")] == ["ok"] * 3
    assert runs(app, "fine")[0]["result"] == {"n": 1}


def test_catch_up_within_grace_runs_once_and_an_older_gap_is_one_missed_row(
        make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a")
    registry = Registry()
    ran: list[tuple[str, str]] = []
    registry.add("every5", lambda ctx: ran.append((ctx.trigger, ctx.scheduled_for.isoformat())),
                 triggers.every(minutes=5), misfire_grace_s=300)
    registry.add("daily", lambda ctx: ran.append((ctx.trigger, "daily")),
                 triggers.daily("06:00"), misfire_grace_s=300)
    # the last daemon ran every5's 10:00 slot and daily's slot two days ago
    first = Scheduler(app, registry, instance_id="old", clock=Clock(T0.replace(hour=10)))
    first.fire(registry.get("every5"), T0.replace(hour=10), RunTrigger.SCHEDULE)
    first.fire(registry.get("daily"), T0.replace(hour=6) - timedelta(days=2), RunTrigger.SCHEDULE)
    wait_runs(first)
    ran.clear()

    clock = Clock(T0.replace(hour=11, minute=1))  # 11:01, daily's 06:00 long past grace
    scheduler = Scheduler(app, registry, instance_id="new", clock=clock)
    scheduler.start()
    wait_runs(scheduler)
    assert ran == [("catch_up", T0.replace(hour=11).isoformat())]
    every5 = runs(app, "every5")
    assert [(r["status"], r["trigger"]) for r in every5] == [
        ("ok", "schedule"), ("missed", "catch_up"), ("ok", "catch_up")]
    assert every5[1]["result"]["missed_slots"] == 11
    daily = runs(app, "daily")
    assert [r["status"] for r in daily] == ["ok", "missed"]
    assert daily[1]["result"]["missed_slots"] == 2


def test_paused_jobs_skip_their_slots_and_resume(make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a")
    clock = Clock(T0)
    registry = Registry()
    registry.add("pausable", lambda ctx: None, triggers.every(seconds=1))
    scheduler = Scheduler(app, registry, instance_id="a-1", clock=clock)
    scheduler.start()
    wait_runs(scheduler)
    app.scheduler.registry.add("pausable", lambda ctx: None, triggers.every(seconds=1))
    app.scheduler.pause_job("pausable")
    scheduler.refresh_paused()
    for _ in range(3):
        clock.advance(1)
        scheduler.run_pending()
    assert len(runs(app, "pausable")) == 1
    app.scheduler.resume_job("pausable")
    scheduler.refresh_paused()
    clock.advance(1)
    scheduler.run_pending()
    wait_runs(scheduler)
    assert len(runs(app, "pausable")) == 2


def test_host_job_runs_while_postgres_is_down_and_its_run_is_replayed(
        make_app: Callable[..., api.Aegis], tmp_path: Path) -> None:
    down = make_app("host-a", AEGIS_DATABASE_URL="postgresql://aegis@127.0.0.1:9/none",
                    AEGIS_HOME=str(tmp_path / "shared-home"))
    down.db.timeout_s = 1.0
    registry = Registry()
    registry.add("local", lambda ctx: {"ran": True}, triggers.every(seconds=60))
    registry.add("global", lambda ctx: {"ran": True}, triggers.every(seconds=60),
                 scope="cluster")
    scheduler = Scheduler(down, registry, instance_id="a-1", clock=Clock(T0))
    local = scheduler.fire(registry.get("local"), T0, RunTrigger.SCHEDULE)
    assert isinstance(local, Execution)
    assert scheduler.fire(registry.get("global"), T0, RunTrigger.SCHEDULE) is None
    wait_runs(scheduler)
    assert down.store.spool.pending() == 1

    up = make_app("host-a", AEGIS_HOME=str(tmp_path / "shared-home"))
    assert up.store.replay_spool() == 1
    assert up.store.replay_spool() == 0
    rows = runs(up, "local")
    assert [(r["status"], r["result"]) for r in rows] == [("ok", {"ran": True})]
    assert rows[0]["scheduled_for"] == T0


def test_manual_run_through_the_python_api_is_recorded(app: api.Aegis) -> None:
    app.scheduler.add_job(lambda ctx: {"args": ctx.args}, id="by_hand",
                          trigger=triggers.daily("03:00"))
    record = app.scheduler.run_job("by_hand", args={"x": 1})
    assert isinstance(record, JobRun)
    assert (record.trigger, record.status, record.result) == ("manual", "ok",
                                                              {"args": {"x": 1}})


def test_the_slots_of_one_tick_are_claimed_together_each_with_its_own_outcome(
        make_app: Callable[..., api.Aegis]) -> None:
    """Jobs due at once are claimed in one statement; each slot still gets its own answer:
    started, skipped as an overlap, or left to the daemon that claimed it first."""
    app = make_app("host-a")
    release = threading.Event()
    registry = Registry()
    registry.add("busy", lambda ctx: release.wait(10), triggers.every(seconds=1))
    registry.add("taken", lambda ctx: None, triggers.every(seconds=1), scope="cluster")
    registry.add("free", lambda ctx: {"slot": ctx.scheduled_for.isoformat()},
                 triggers.every(seconds=1))
    clock = Clock(T0)
    other = Scheduler(make_app("host-b"), registry, instance_id="b-1", clock=clock)
    scheduler = Scheduler(app, registry, instance_id="a-1", clock=clock)
    slot = T0 + timedelta(seconds=1)
    assert isinstance(other.fire(registry.get("taken"), slot, RunTrigger.SCHEDULE), Execution)
    assert isinstance(scheduler.fire(registry.get("busy"), T0, RunTrigger.SCHEDULE), Execution)

    outcomes = scheduler.fire_all([Slot(registry.get(job_id), slot, RunTrigger.SCHEDULE)
                                   for job_id in ("busy", "taken", "free")])
    release.set()
    wait_runs(scheduler)
    wait_runs(other)

    busy, taken, free = outcomes
    assert isinstance(busy, JobRun)
    assert (busy.job_id, busy.status, busy.scheduled_for) == ("busy", "skipped", slot)
    assert taken is None
    assert isinstance(free, Execution)
    assert [(r["status"], r["result"]) for r in runs(app, "free")] == [
        ("ok", {"slot": slot.isoformat()})]
    assert [(r["host"], r["status"]) for r in runs(app, "taken")] == [("host-b", "ok")]
    assert [r["status"] for r in runs(app, "busy")] == ["ok", "skipped"]


def test_a_slot_the_database_refuses_costs_only_itself(make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a")
    with psycopg.connect(app.db.dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION refuse_cursed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.job_id = 'cursed' THEN RAISE EXCEPTION 'no runs for cursed'; END IF;
                RETURN NEW;
            END $$""")
        conn.execute("CREATE TRIGGER refuse_cursed BEFORE INSERT ON job_runs "
                     "FOR EACH ROW EXECUTE FUNCTION refuse_cursed()")
    ran: list[str] = []
    registry = Registry()
    for job_id in ("cursed", "fine"):
        registry.add(job_id, lambda ctx: ran.append(ctx.job_id), triggers.every(seconds=1))
    clock = Clock(T0 + timedelta(milliseconds=10))
    scheduler = Scheduler(app, registry, instance_id="a-1", clock=clock)
    scheduler.schedule_job(registry.get("cursed"))
    scheduler.schedule_job(registry.get("fine"))
    wait_runs(scheduler)  # the catch-up run first, or the next slot overlaps it
    for _ in range(2):
        clock.advance(1)
        scheduler.run_pending()  # claims both in one statement, which the trigger fails
        wait_runs(scheduler)
    assert ran.count("fine") == 3  # the catch-up run at start and both ticks
    assert "cursed" not in ran
    assert runs(app, "cursed") == []
    # claimed ahead, fine still runs when its slot's claim with cursed fails
    clock.advance(0.95)
    scheduler.paused = {"cursed"}  # claimed when due, not ahead
    assert scheduler.claim_ahead() == 1
    scheduler.paused = set()
    clock.advance(0.05)
    scheduler.run_pending()
    wait_runs(scheduler)
    assert ran.count("fine") == 4
    assert [r["status"] for r in runs(app, "fine")] == ["ok"] * 4


def test_a_job_that_allows_overlap_is_claimed_while_its_run_goes_on(app: api.Aegis) -> None:
    from aegis.scheduling.repository import Runs, RunStatus, WantedSlot

    runs = Runs(app.db)
    live = T0 - timedelta(minutes=1)

    def claim(job_id: str, at: datetime, overlap: bool, running: tuple[int, ...] = ()
              ) -> list[JobRun]:
        return runs.claim([WantedSlot(job_id, "h", RunTrigger.SCHEDULE, at, overlap=overlap)],
                          host="h", now=at, instance_id="h-1", live_since=live,
                          running_ids=running)

    for job_id, overlap in (("db.strict", False), ("db.loose", True)):
        [first] = claim(job_id, T0, overlap)
        [second] = claim(job_id, T0 + timedelta(seconds=2), overlap, (first.id,))
        assert first.status == RunStatus.RUNNING
        assert second.status == (RunStatus.RUNNING if overlap else RunStatus.SKIPPED)


def test_a_run_row_this_daemon_is_not_running_does_not_hold_its_job_up(
        app: api.Aegis) -> None:
    """A row left 'running' that this daemon no longer runs (its finish was committed on a
    primary that failed over before the standby had it) does not skip the next slots."""
    from aegis.scheduling.repository import Runs, RunStatus, WantedSlot

    runs = Runs(app.db)

    def claim(at: datetime, running: tuple[int, ...]) -> JobRun:
        [run] = runs.claim([WantedSlot("db.strict", "h", RunTrigger.SCHEDULE, at)], host="h",
                           now=at, instance_id="h-1", live_since=T0 - timedelta(minutes=1),
                           running_ids=running)
        return run

    lost = claim(T0, ())
    assert claim(T0 + timedelta(seconds=1), (lost.id,)).status == RunStatus.SKIPPED
    assert claim(T0 + timedelta(seconds=2), ()).status == RunStatus.RUNNING


def test_a_run_end_closes_its_own_run_not_another_given_the_same_id(app: api.Aegis) -> None:
    """After an asynchronous failover the server may issue a lost run's id again to
    another run: the lost run's end leaves that one alone."""
    from aegis.scheduling.repository import RunEnd, Runs, RunStatus, WantedSlot
    from tests.support.rows import execute

    runs, url = Runs(app.db), app.db.dsn
    [lost] = runs.claim([WantedSlot("db.lost", "h", RunTrigger.SCHEDULE, T0)], host="h",
                        now=T0, instance_id="h-1", live_since=T0)
    execute(url, "DELETE FROM job_runs WHERE id = %s", lost.id)
    execute(url, "INSERT INTO job_runs (id, job_id, scope_key, host, trigger, scheduled_for, "
                 "started_at, status, instance_id) OVERRIDING SYSTEM VALUE VALUES "
                 "(%s, 'db.other', 'h', 'h', 'schedule', %s, %s, 'running', 'h-2')",
            lost.id, T0, T0)

    runs.finish(RunEnd(lost.id, RunStatus.FAILED, T0, "boom", None, job_id="db.lost",
                       scheduled_for=T0))
    assert sql_rows(url, "SELECT job_id, status FROM job_runs") == [
        {"job_id": "db.other", "status": "running"}]
    runs.finish(RunEnd(lost.id, RunStatus.OK, T0, None, None, job_id="db.other",
                       scheduled_for=T0))
    assert sql_rows(url, "SELECT status FROM job_runs") == [{"status": "ok"}]


def test_a_spooled_run_end_closes_its_run_with_or_without_its_slot(app: api.Aegis) -> None:
    """A ``job_run_finish`` record names its run's job and slot; one of an older version
    (the id alone) still closes its run."""
    from aegis.scheduling.repository import Runs, WantedSlot, replay_run_finish

    runs = Runs(app.db)
    claimed = runs.claim([WantedSlot(f"db.{n}", "h", RunTrigger.SCHEDULE, T0) for n in (1, 2)],
                         host="h", now=T0, instance_id="h-1", live_since=T0)
    new, old = sorted(claimed, key=lambda run: run.job_id)
    with app.db.transaction() as tx:
        replay_run_finish(tx, {"id": new.id, "job_id": "db.1", "scheduled_for": T0.isoformat(),
                               "status": "ok", "now": T0.isoformat(), "result": None})
        replay_run_finish(tx, {"id": old.id, "status": "failed", "now": T0.isoformat(),
                               "error": "boom"})
    assert sql_rows(app.db.dsn, "SELECT job_id, status FROM job_runs ORDER BY job_id") == [
        {"job_id": "db.1", "status": "ok"}, {"job_id": "db.2", "status": "failed"}]


def test_a_slot_is_claimed_ahead_of_its_time_and_started_on_it_without_a_second_claim(
        make_app: Callable[..., api.Aegis]) -> None:
    """Two daemons claim the next slot of a cluster job CLAIM_AHEAD_S before it is due:
    one wins it (its row running from the slot's time, before the job starts), and when
    the slot comes due, that one starts it with no other statement and the other never
    does."""
    clock = Clock(T0 + timedelta(milliseconds=500))
    started: list[tuple[str, int | None]] = []
    lock = threading.Lock()
    schedulers = []
    for host in ("host-a", "host-b"):
        registry = Registry()

        def job(ctx: JobContext, host: str = host) -> None:
            with lock:
                started.append((host, ctx.run_id))

        registry.add("tick", job, triggers.every(seconds=1), scope="cluster")
        scheduler = Scheduler(make_app(host), registry, instance_id=f"{host}-1", clock=clock)
        scheduler.start()
        schedulers.append(scheduler)
    for scheduler in schedulers:
        wait_runs(scheduler)
    started.clear()
    app = schedulers[0].runtime
    clock.advance(0.45)  # 50 ms before T0 + 1 s
    assert [s.claim_ahead() for s in schedulers] == [1, 1]
    [row] = [r for r in runs(app, "tick") if r["scheduled_for"] == T0 + timedelta(seconds=1)]
    assert row["status"] == "running"
    assert row["started_at"] == T0 + timedelta(seconds=1)
    assert started == []  # claimed, not started before its time
    assert [s.next_wake() for s in schedulers] == [T0 + timedelta(seconds=1)] * 2

    clock.advance(0.05)
    for scheduler in schedulers:
        scheduler.run_pending()
        wait_runs(scheduler)
    assert started == [(row["host"], row["id"])]
    assert [r["status"] for r in runs(app, "tick")] == ["ok", "ok"]


def test_a_slot_claimed_ahead_whose_job_is_paused_before_its_time_is_closed_skipped(
        make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a")
    clock = Clock(T0 + timedelta(milliseconds=500))
    ran: list[datetime] = []
    registry = Registry()
    registry.add("tick", lambda ctx: ran.append(ctx.scheduled_for), triggers.every(seconds=1))
    scheduler = Scheduler(app, registry, instance_id="a-1", clock=clock)
    scheduler.start()
    wait_runs(scheduler)
    clock.advance(0.45)
    assert scheduler.claim_ahead() == 1
    scheduler.paused = {"tick"}  # as `aegis jobs pause tick` leaves it
    clock.advance(6)
    scheduler.run_pending()
    assert scheduler.claim_ahead() == 0
    ahead = [r for r in runs(app, "tick") if r["scheduled_for"] == T0 + timedelta(seconds=1)]
    assert [(r["status"], r["error"]) for r in ahead] == [
        ("skipped", "not started: its job was paused or removed before its slot")]
    assert T0 + timedelta(seconds=1) not in ran


def test_a_stopping_daemon_closes_the_slots_it_claimed_ahead(
        make_app: Callable[..., api.Aegis]) -> None:
    app = make_app("host-a")
    clock = Clock(T0 + timedelta(milliseconds=950))
    registry = Registry()
    registry.add("tick", lambda ctx: None, triggers.every(seconds=1))
    scheduler = Scheduler(app, registry, instance_id="a-1", clock=clock)
    scheduler.start()
    wait_runs(scheduler)
    assert scheduler.claim_ahead() == 1
    scheduler.release_claimed_ahead("the daemon stopped before its slot")
    assert [r["status"] for r in runs(app, "tick")] == ["ok", "skipped"]
