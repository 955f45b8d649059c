"""The foundation's commands as a user runs them: --version, events, db url with psql."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aegis import api
from aegis.version import __version__
from tests.support.cli import clean_environ, have_psql, run_cli
from tests.support.waiting import wait_for

SEED_QUERY = ("SELECT event_type, summary, timestamp FROM episodic_memory WHERE event_type IN "
              "('morning_status','evening_summary','docker_health_check') "
              "ORDER BY timestamp DESC LIMIT 10;")
KEYS = ["timestamp", "event_type", "summary", "importance", "host", "source", "details"]


def test_version() -> None:
    result = run_cli("--version", env={})
    assert result.returncode == 0
    assert result.stdout.strip() == f"aegis, version {__version__}"


@pytest.fixture
def seeded(app: api.Aegis) -> datetime:
    """Five events over the last three days; returns the time they were recorded around."""
    now = datetime.now(UTC).replace(microsecond=0)
    for hours_ago, event_type, importance in [(70, "morning_status", "low"),
                                              (30, "docker_health_check", "high"),
                                              (5, "morning_status", "medium"),
                                              (2, "container_restarted", "critical"),
                                              (1, "docker_health_check", "low")]:
        app.store.record_event(event_type, f"{event_type} {hours_ago}h ago",
                               importance=importance, source="test",
                               details={"hours_ago": hours_ago},
                               timestamp=now - timedelta(hours=hours_ago))
    return now


def events_json(aegis_env: dict[str, str], *args: str) -> list[dict[str, object]]:
    result = run_cli("events", "--json", *args, env=aegis_env)
    assert result.returncode == 0, result.stderr
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found


def test_events_json_has_the_documented_keys(seeded: datetime,
                                             aegis_env: dict[str, str]) -> None:
    found = events_json(aegis_env)
    assert [e["summary"] for e in found] == ["docker_health_check 1h ago",
                                             "container_restarted 2h ago",
                                             "morning_status 5h ago"]
    assert list(found[0]) == KEYS
    assert found[0] == {
        "timestamp": (seeded - timedelta(hours=1)).isoformat(),
        "event_type": "docker_health_check", "summary": "docker_health_check 1h ago",
        "importance": "low", "host": "test-host", "source": "test",
        "details": {"hours_ago": 1}}


def test_events_filters(seeded: datetime, aegis_env: dict[str, str]) -> None:
    def summaries(*args: str) -> list[object]:
        return [e["summary"] for e in events_json(aegis_env, *args)]

    assert len(summaries("--since", "7d")) == 5
    assert summaries("--since", "7d", "--type", "morning_status") == [
        "morning_status 5h ago", "morning_status 70h ago"]
    assert summaries("--since", "7d", "--type", "morning_status",
                     "--type", "container_restarted") == [
        "container_restarted 2h ago", "morning_status 5h ago", "morning_status 70h ago"]
    assert summaries("--since", "7d", "--importance", "high") == [
        "container_restarted 2h ago", "docker_health_check 30h ago"]
    assert summaries("--since", "7d", "--limit", "2") == [
        "docker_health_check 1h ago", "container_restarted 2h ago"]
    since = (seeded - timedelta(hours=6)).isoformat()
    assert len(summaries("--since", since)) == 3
    assert summaries("--since", "1d", "--type", "nothing_like_this") == []


def test_events_table_for_people(seeded: datetime, aegis_env: dict[str, str]) -> None:
    result = run_cli("events", "--since", "3h", env=aegis_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TIMESTAMP", "IMPORTANCE", "EVENT_TYPE", "HOST", "SUMMARY"]
    assert "critical" in lines[2]
    assert lines[2].rstrip().endswith("container_restarted 2h ago")
    assert len(lines) == 3


@pytest.mark.parametrize(("args", "names"), [
    (("--since", "yesterday"), "--since"),
    (("--importance", "urgent"), "--importance"),
    (("--limit", "0"), "--limit"),
    (("--limit", "ten"), "--limit"),
])
def test_bad_event_options_exit_2_with_one_line(args: tuple[str, ...], names: str,
                                                aegis_env: dict[str, str]) -> None:
    result = run_cli("events", *args, env=aegis_env)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert names in result.stderr
    assert result.stdout == ""


def test_events_with_the_database_down_exits_1_without_the_password(tmp_path: Path) -> None:
    env = {"AEGIS_DATABASE_URL": "postgresql://aegis:hunter2-secret@127.0.0.1:1/aegis",
           "AEGIS_HOME": str(tmp_path / "home")}
    result = run_cli("events", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("aegis: database unreachable: ")
    assert "hunter2-secret" not in result.stderr + result.stdout


# --- the embedded default ---


@pytest.mark.skipif(not have_psql(), reason="psql is not installed")
def test_db_url_with_nothing_configured_works_with_psql(fresh_home: Path,
                                                       tmp_path: Path) -> None:
    env = {"AEGIS_HOME": str(fresh_home), "HOME": str(tmp_path)}
    result = run_cli("db", "url", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("postgresql://")
    assert (fresh_home / "pgdata" / "postmaster.pid").exists()  # left running for psql

    migrated = run_cli("db", "migrate", env=env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    recorded = run_cli("events", "--json", env=env)  # the same server, reused
    assert recorded.returncode == 0, recorded.stderr
    assert run_cli("db", "url", env=env).stdout.strip() == url

    def psql(command: str) -> str:
        done = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-c", command],
                              env=clean_environ({}), capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "(0 rows)" in psql(SEED_QUERY)
    psql("INSERT INTO episodic_memory (uid, event_type, summary, host) "
         "VALUES (gen_random_uuid(), 'morning_status', 'all quiet', 'h1')")
    out = psql(SEED_QUERY)
    assert "event_type | summary | timestamp" in " ".join(out.split())
    assert "morning_status | all quiet" in " ".join(out.split())
    assert "(1 row)" in out

    # stopped, the data persists: the next command starts the server, finds the row, and
    # stops what it started
    pid_file = fresh_home / "pgdata" / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
    wait_for(lambda: not pid_file.exists())
    again = run_cli("events", "--json", env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert [e["summary"] for e in json.loads(again.stdout)] == ["all quiet"]
    assert not pid_file.exists()
