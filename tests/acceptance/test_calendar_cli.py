"""Time zones and deadlines through the real ``aegis`` command: ``aegis run --once`` in
Europe/Berlin plans the morning status at 05:00 or 04:00 UTC depending on the date, ``aegis
jobs list`` shows it in Berlin time; a run past its max_runtime leaves one job_overrun; a
real daemon's own loop sends one alert for a silent job and records its resumption."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.support.cli import REPO, run_cli
from tests.support.daemons import Spawner
from tests.support.discord import FakeDiscord
from tests.support.rows import sql_rows
from tests.support.waiting import wait_for

BERLIN = ZoneInfo("Europe/Berlin")


def next_six_in_berlin(moment: datetime) -> datetime:
    local = moment.astimezone(BERLIN)
    day = local.date() if local.time() < time(6, 0) else local.date() + timedelta(days=1)
    return datetime.combine(day, time(6, 0), tzinfo=BERLIN).astimezone(UTC)


def test_run_once_in_berlin_plans_the_morning_status_at_its_utc_hour(
        aegis_env: dict[str, str]) -> None:
    env = {**aegis_env, "AEGIS_TIMEZONE": "Europe/Berlin", "AEGIS_REMEDIATION": "off"}
    before = datetime.now(UTC)
    result = run_cli("run", "--once", env=env, timeout=120)
    after = datetime.now(UTC)
    assert result.returncode == 0, result.stderr

    [row] = sql_rows(aegis_env["AEGIS_DATABASE_URL"], "SELECT next_run_at, trigger, timezone "
                     "FROM jobs WHERE id = 'morning_status'")
    planned = row["next_run_at"]
    assert planned in {next_six_in_berlin(before), next_six_in_berlin(after)}
    winter = planned.astimezone(BERLIN).utcoffset() == timedelta(hours=1)
    assert planned.astimezone(UTC).hour == (5 if winter else 4)
    assert (row["trigger"], row["timezone"]) == ("daily at 06:00 Europe/Berlin",
                                                 "Europe/Berlin")

    listed = json.loads(run_cli("jobs", "list", "--json", env=env).stdout)
    morning = next(job for job in listed if job["id"] == "morning_status")
    assert morning["timezone"] == "Europe/Berlin"
    assert datetime.fromisoformat(morning["next_run"]) == planned
    assert morning["next_run"].endswith("+00:00")
    table = run_cli("jobs", "list", env=env).stdout
    [line] = [line for line in table.splitlines() if line.startswith("morning_status ")]
    offset = "+01:00" if winter else "+02:00"
    assert f"{planned.astimezone(BERLIN):%Y-%m-%d} 06:00:00 {offset}" in line


def test_a_run_past_its_max_runtime_leaves_one_job_overrun(aegis_env: dict[str, str]) -> None:
    env = {**aegis_env, "AEGIS_JOB_MODULES": "tests.jobmods.deadline", "PYTHONPATH": str(REPO),
           "AEGIS_REMEDIATION": "off", "AEGIS_TEST_OVERRUN_S": "2"}
    result = run_cli("run", "--once", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    url = aegis_env["AEGIS_DATABASE_URL"]
    [overrun] = sql_rows(url, "SELECT summary, importance::text AS importance FROM "
                              "episodic_memory WHERE event_type = 'job_overrun'")
    assert overrun == {"summary": "job overruns is still running after its max_runtime of "
                                  "0.5s", "importance": "high"}
    [run] = sql_rows(url, "SELECT status, result FROM job_runs WHERE job_id = 'overruns'")
    assert run == {"status": "ok", "result": {"ran_s": 2.0}}  # not stopped


def test_a_real_daemon_alerts_once_for_a_silent_job_and_records_its_resumption(
        aegis_env: dict[str, str], spawn: Spawner, tmp_path: Path) -> None:
    discord = FakeDiscord()
    flag = tmp_path / "fail"
    flag.touch()
    env = {**aegis_env, "AEGIS_JOB_MODULES": "tests.jobmods.deadline", "PYTHONPATH": str(REPO),
           "AEGIS_REMEDIATION": "off", "AEGIS_HEARTBEAT_INTERVAL": "0.5",
           "AEGIS_TEST_FLAKY_FILE": str(flag), "DISCORD_WEBHOOK_URL": discord.webhook_url()}
    url = aegis_env["AEGIS_DATABASE_URL"]

    def events(event_type: str) -> list[dict[str, object]]:
        return sql_rows(url, "SELECT summary FROM episodic_memory WHERE event_type = %s",
                        event_type)

    def titles() -> list[str]:
        return [embed["title"] for body in discord.received for embed in body["embeds"]]

    try:
        daemon = spawn(env)
        wait_for(lambda: events("job_silent"), what="job_silent")
        wait_for(lambda: "job flaky is silent" in titles(), what="the alert")
        flag.unlink()
        wait_for(lambda: events("job_resumed"), what="job_resumed")
        wait_for(lambda: "job flaky resumed" in titles(), what="the resumption message")
        failed_runs = sql_rows(url, "SELECT count(*) AS n FROM job_runs WHERE job_id = 'flaky' "
                                    "AND status = 'failed'")[0]["n"]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        discord.close()
    assert failed_runs >= 2  # it failed on several slots and heartbeats: still one alert
    assert len(events("job_silent")) == 1
    assert len(events("job_resumed")) == 1
    assert [t for t in titles() if t.startswith("job flaky")] == [
        "job flaky is silent", "job flaky resumed"]
