"""Real ``aegis run`` processes against a real PostgreSQL."""

from __future__ import annotations

import http.server
import itertools
import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.cli import run_cli
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for


def tick_env(aegis_env: dict[str, str], **extra: str) -> dict[str, str]:
    """A daemon running the ticking test jobs (tests/jobmods/tick.py), logging at info."""
    return daemon_env(aegis_env, **{"AEGIS_JOB_MODULES": "tests.jobmods.tick",
                                     "AEGIS_LOG_LEVEL": "info", **extra})


def test_two_hosts_run_twenty_slots_of_a_cluster_job_exactly_once(
        aegis_env: dict[str, str], spawn: Spawner, tmp_path: Path) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    for host in ("host-a", "host-b"):
        spawn(tick_env(aegis_env, AEGIS_HOST=host, AEGIS_HOME=str(tmp_path / host)))
    wait_for(lambda: len(rows(url, "SELECT 1 FROM daemons WHERE status = 'running'")) == 2,
             what="both daemons")
    first = rows(url, "SELECT now() AS now")[0]["now"]
    wait_for(lambda: len(rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'tick' AND "
                                   "status = 'ok' AND scheduled_for > %s", first)) >= 20,
             timeout_s=60, what="20 tick slots")
    for process in spawn.processes:
        process.send_signal(signal.SIGTERM)
    assert [process.wait(30) for process in spawn.processes] == [0, 0]
    ticks = rows(url, "SELECT details->>'slot' AS slot, details->>'host' AS host "
                      "FROM episodic_memory WHERE event_type = 'tick_ran'")
    per_slot = Counter(tick["slot"] for tick in ticks)
    assert len(per_slot) >= 20
    assert set(per_slot.values()) == {1}, "a slot ran more than once"
    assert {tick["host"] for tick in ticks} <= {"host-a", "host-b"}
    # health_check is host-scoped: each host runs each of its slots once (the run can
    # span a 5-minute boundary, so a host may have run a second slot).
    health = rows(url, "SELECT host, scheduled_for FROM job_runs "
                       "WHERE job_id = 'health_check'")
    per_host_slot = Counter((r["host"], r["scheduled_for"]) for r in health)
    assert {host for host, _ in per_host_slot} == {"host-a", "host-b"}
    assert set(per_host_slot.values()) == {1}, "a host ran a health_check slot twice"


def test_a_second_daemon_is_refused_naming_the_pid(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    env = tick_env(aegis_env)
    first = spawn(env)
    wait_for(daemon_running(aegis_env["AEGIS_DATABASE_URL"]), what="first daemon")
    second = run_cli("run", env=env)
    assert second.returncode == 1
    assert f"pid {first.pid}" in second.stderr
    assert second.stderr.count("\n") == 1
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0


def test_sigterm_lets_the_running_job_finish_then_records_daemon_stopped(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    process = spawn(tick_env(aegis_env))
    wait_for(daemon_running(url), what="daemon")
    assert run_cli("jobs", "run", "sleeper", "--arg", "seconds=2", env=tick_env(
        aegis_env)).returncode == 0
    wait_for(lambda: rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'sleeper' AND "
                               "status = 'running'"), what="sleeper running")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    run = rows(url, "SELECT status, trigger FROM job_runs WHERE job_id = 'sleeper'")
    assert run == [{"status": "ok", "trigger": "manual"}]
    assert rows(url, "SELECT status FROM tasks") == [{"status": "done"}]
    assert rows(url, "SELECT 1 FROM episodic_memory WHERE event_type = 'daemon_stopped'")
    assert run_cli("status", "--json", env=tick_env(aegis_env)).stdout.count(
        '"status": "stopped"') == 1


def test_sigterm_past_the_grace_marks_the_job_interrupted(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    process = spawn(tick_env(aegis_env, AEGIS_SHUTDOWN_GRACE="1s"))
    wait_for(daemon_running(url), what="daemon")
    run_cli("tasks", "add", "sleeper", "--arg", "seconds=60", env=tick_env(aegis_env))
    wait_for(lambda: rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'sleeper' AND "
                               "status = 'running'"), what="sleeper running")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert rows(url, "SELECT status FROM job_runs WHERE job_id = 'sleeper'") == [
        {"status": "interrupted"}]
    assert rows(url, "SELECT status FROM tasks") == [{"status": "failed"}]


def test_kill_9_then_restart_records_interrupted_and_unclean_restart(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    env = tick_env(aegis_env)
    process = spawn(env)
    wait_for(daemon_running(url), what="daemon")
    run_cli("jobs", "run", "sleeper", "--arg", "seconds=60", env=env)
    wait_for(lambda: rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'sleeper' AND "
                               "status = 'running'"), what="sleeper running")
    process.kill()
    process.wait(10)
    assert run_cli("check", env=env).returncode == 1
    restarted = spawn(env)
    wait_for(lambda: rows(url, "SELECT 1 FROM episodic_memory WHERE event_type = "
                               "'daemon_unclean_restart'"), what="unclean restart event")
    assert rows(url, "SELECT status FROM job_runs WHERE job_id = 'sleeper'") == [
        {"status": "interrupted"}]
    assert wait_for(lambda: run_cli("check", env=env).returncode == 0, what="check ok")
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(30) == 0


def test_tasks_inserted_with_sql_are_picked_up_and_unknown_jobs_fail_cleanly(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    process = spawn(tick_env(aegis_env))
    wait_for(daemon_running(url), what="daemon")
    # one statement, so all three rows share created_at: each still gets its own run
    rows(url, "INSERT INTO tasks (job_id, args) VALUES ('sleeper', '{\"seconds\": 0}'), "
              "('no_such_job', '{}'), ('sleeper', '{\"seconds\": 0}') RETURNING id")
    wait_for(lambda: len(rows(url, "SELECT 1 FROM tasks WHERE status IN ('done', 'failed')"))
             == 3, what="all tasks")
    final = rows(url, "SELECT job_id, status, error FROM tasks ORDER BY id")
    assert final[0]["status"] == final[2]["status"] == "done"
    assert final[1]["status"] == "failed"
    assert final[1]["error"].startswith("unknown job 'no_such_job' (this daemon runs: ")
    assert "sleeper" in final[1]["error"].split("runs: ")[1].rstrip(")").split(", ")
    assert len(rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'sleeper' AND "
                         "status = 'ok' AND trigger = 'manual'")) == 2
    assert process.poll() is None, "the daemon must keep running"
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_tasks_queued_for_a_busy_job_wait_for_its_run_instead_of_failing(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    process = spawn(tick_env(aegis_env))
    wait_for(daemon_running(url), what="daemon")
    rows(url, "INSERT INTO tasks (job_id, args) VALUES ('sleeper', '{\"seconds\": 1}'), "
              "('sleeper', '{\"seconds\": 1}'), ('sleeper', '{\"seconds\": 0}') RETURNING id")
    wait_for(lambda: not rows(url, "SELECT 1 FROM tasks WHERE status IN ('pending', 'running')"),
             what="every task closed")
    assert [t["status"] for t in rows(url, "SELECT status FROM tasks ORDER BY id")] == [
        "done", "done", "done"]
    runs = rows(url, "SELECT r.status, r.started_at, r.finished_at FROM tasks t "
                     "JOIN job_runs r ON r.id = t.run_id ORDER BY t.id")
    assert [r["status"] for r in runs] == ["ok", "ok", "ok"]
    for earlier, later in itertools.pairwise(runs):
        assert later["started_at"] >= earlier["finished_at"], "runs of one job overlapped"
    assert not rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'sleeper' AND status = 'skipped'")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


@pytest.mark.serial  # nothing may run in a window of real time
def test_pause_is_honoured_by_a_running_daemon(aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    env = tick_env(aegis_env)
    process = spawn(env)
    wait_for(daemon_running(url), what="daemon")
    assert run_cli("jobs", "pause", "tick", env=env).returncode == 0
    time.sleep(2.5)  # one heartbeat (1 s) for the daemon to see the flag, plus margin
    before = len(rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'tick'"))
    time.sleep(3)
    assert len(rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'tick'")) == before
    listed = run_cli("jobs", "list", "--json", env=env)
    assert '"paused": true' in listed.stdout
    assert run_cli("jobs", "resume", "tick", env=env).returncode == 0
    wait_for(lambda: len(rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'tick'")) > before,
             what="tick resumes")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_a_broken_job_module_stops_start_up_with_exit_2(aegis_env: dict[str, str]) -> None:
    result = run_cli("run", "--once", env=tick_env(
        aegis_env, AEGIS_JOB_MODULES="tests.jobmods.broken"))
    assert result.returncode == 2
    assert "tests.jobmods.broken" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (Path(aegis_env["AEGIS_HOME"]) / "aegis.pid").exists()
    assert rows(aegis_env["AEGIS_DATABASE_URL"], "SELECT 1 FROM daemons") == []


def test_failures_timeouts_and_overlaps_in_a_running_daemon(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    process = spawn(tick_env(aegis_env, AEGIS_JOB_MODULES="tests.jobmods.tick,"
                               "tests.jobmods.trouble"))
    wait_for(daemon_running(url), what="daemon")

    def statuses(job: str) -> Counter[str]:
        return Counter(r["status"] for r in rows(url, "SELECT status FROM job_runs "
                                                      "WHERE job_id = %s", job))

    wait_for(lambda: statuses("hang")["timeout"] >= 2 and statuses("slowpoke")["skipped"] >= 2
             and statuses("flaky")["failed"] >= 3, timeout_s=30, what="trouble recorded")
    assert process.poll() is None
    assert statuses("tick")["ok"] >= 3, "other jobs keep running"
    flaky = rows(url, "SELECT error FROM job_runs WHERE job_id = 'flaky' LIMIT 1")
    assert flaky[0]["error"] == "RuntimeError: flaky job failed on purpose"
    assert rows(url, "SELECT importance::text FROM episodic_memory "
                     "WHERE event_type = 'job_timeout' LIMIT 1") == [{"importance": "high"}]
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert '"event": "job_failed"' in spawn.log_of(process)


def clear_of_slot_boundary(period_s: int, margin_s: float = 20) -> None:
    """Sleeps past the next multiple of ``period_s`` when it is under ``margin_s`` away,
    so a test that counts slots from now cannot see one more fall due while it runs."""
    to_boundary = period_s - time.time() % period_s
    if to_boundary < margin_s:
        time.sleep(to_boundary + 0.5)


def test_catch_up_with_real_processes_within_and_beyond_grace(aegis_env: dict[str, str]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    env = tick_env(aegis_env, AEGIS_JOB_MODULES="")
    def previous_run_an_hour_ago() -> None:
        clear_of_slot_boundary(300)
        rows(url, "DELETE FROM job_runs RETURNING id")
        rows(url, "INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, "
                  "status) VALUES ('health_check', 'test-host', 'test-host', 'schedule', "
                  "date_bin('5 minutes', now(), 'epoch') - interval '1 hour', 'ok') "
                  "RETURNING id")

    # a previous daemon ran health_check's slot an hour before the current one
    previous_run_an_hour_ago()
    assert run_cli("run", "--once", env=env).returncode == 0
    runs = rows(url, "SELECT status, trigger, result FROM job_runs "
                     "WHERE job_id = 'health_check' ORDER BY scheduled_for")
    assert [(r["status"], r["trigger"]) for r in runs] == [
        ("ok", "schedule"), ("missed", "catch_up"), ("ok", "catch_up")]
    assert runs[1]["result"]["missed_slots"] == 11

    # beyond grace: with no grace at all, the current slot is missed too, in the same row
    previous_run_an_hour_ago()
    no_grace = {**env, "AEGIS_JOB__HEALTH_CHECK__MISFIRE_GRACE": "0"}
    assert run_cli("run", "--once", env=no_grace).returncode == 0
    runs = rows(url, "SELECT status, result FROM job_runs WHERE job_id = 'health_check' "
                     "ORDER BY scheduled_for")
    assert [r["status"] for r in runs] == ["ok", "missed"]
    assert runs[1]["result"]["missed_slots"] == 12


class PingCounter(http.server.BaseHTTPRequestHandler):
    pings: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        PingCounter.pings.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_status_check_stop_and_the_heartbeat_url(aegis_env: dict[str, str], spawn: Spawner) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PingCounter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = aegis_env["AEGIS_DATABASE_URL"]
    env = tick_env(aegis_env, AEGIS_HEARTBEAT_URL=f"http://127.0.0.1:{server.server_port}"
                                                    "/ping/secret-uuid")
    try:
        assert json.loads(run_cli("status", "--json", env=env).stdout)["status"] == \
            "never_started"
        process = spawn(env)
        wait_for(daemon_running(url), what="daemon")
        wait_for(lambda: run_cli("check", env=env).returncode == 0, what="check")
        status = json.loads(run_cli("status", "--json", env=env).stdout)
        assert status["status"] == "running"
        assert status["pid"] == process.pid
        assert status["host"] == "test-host"
        assert status["heartbeat_age_s"] < 30
        assert "tick" in [job["id"] for job in status["next_jobs"]]
        wait_for(lambda: len(PingCounter.pings) >= 2, what="heartbeat pings")
        assert set(PingCounter.pings) == {"/ping/secret-uuid"}

        listed = json.loads(run_cli("jobs", "list", "--json", env=env).stdout)
        tick = next(job for job in listed if job["id"] == "tick")
        assert set(tick) >= {"id", "trigger", "scope", "next_run", "last_run",
                             "last_status", "paused"}
        assert (tick["trigger"], tick["scope"]) == ("every second", "cluster")

        stopped = run_cli("stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert process.wait(10) == 0
        assert json.loads(run_cli("status", "--json", env=env).stdout)["status"] == "stopped"
        assert run_cli("check", env=env).returncode == 1
        assert run_cli("stop", env=env).returncode == 1
    finally:
        server.shutdown()
    assert "secret-uuid" not in spawn.log_of(process)


def test_a_second_signal_exits_at_once(aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    process = spawn(tick_env(aegis_env))
    wait_for(daemon_running(url), what="daemon")
    run_cli("jobs", "run", "sleeper", "--arg", "seconds=60", env=tick_env(aegis_env))
    wait_for(lambda: rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'sleeper' AND "
                               "status = 'running'"), what="sleeper running")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    assert process.wait(5) == 1


def test_tasks_can_be_listed_and_cancelled_before_they_start(aegis_env: dict[str, str]) -> None:
    env = tick_env(aegis_env)
    added = run_cli("tasks", "add", "sleeper", "--arg", "seconds=1", env=env)
    assert added.returncode == 0
    task_id = added.stdout.split()[2]
    listed = json.loads(run_cli("tasks", "list", "--json", env=env).stdout)
    assert [(t["id"], t["status"], t["args"]) for t in listed] == [
        (int(task_id), "pending", {"seconds": 1})]
    assert run_cli("tasks", "cancel", task_id, env=env).returncode == 0
    assert run_cli("tasks", "cancel", task_id, env=env).returncode == 1
    unknown = run_cli("tasks", "add", "no_such_job", env=env)
    assert unknown.returncode == 2
    assert "no job 'no_such_job'" in unknown.stderr
