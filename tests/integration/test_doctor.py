"""``aegis doctor`` against a real PostgreSQL and the real Docker engine."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from aegis.core.config import Settings
from aegis.doctor.checks import FAIL, OK, WARN
from aegis.doctor.database import clock_check
from aegis.doctor.local import check_journal_dir, check_maintenance_windows
from aegis.scheduling.heartbeat import Heartbeat, write_heartbeat
from tests.images import socket_proxy_profile
from tests.support.cli import run_cli

WEBHOOK_TOKEN = "s3cretT0kenDoNotLeak"
WEBHOOK = f"https://discord.com/api/webhooks/123456/{WEBHOOK_TOKEN}"


def doctor(env: dict[str, str]) -> tuple[int, dict[str, dict[str, str]], str]:
    result = run_cli("doctor", "--json", env=env, timeout=120)
    checks = json.loads(result.stdout)
    assert all(set(c) == {"check", "status", "detail", "hint"} for c in checks)
    assert all(c["status"] in (OK, WARN, FAIL) for c in checks)
    assert all(c["hint"] for c in checks if c["status"] != OK)
    return result.returncode, {c["check"]: c for c in checks}, result.stdout + result.stderr


def test_a_fresh_machine_with_nothing_configured(tmp_path: Path, docker_client: Any) -> None:
    env = {"AEGIS_HOME": str(tmp_path / "home"), "AEGIS_JOURNAL_DIR": str(tmp_path / "journal"),
           "AEGIS_HTTP_ADDR": "off"}
    code, checks, _ = doctor(env)

    assert checks["database"]["status"] == OK, checks["database"]
    assert "embedded" in checks["database"]["detail"]
    assert checks["migrations"]["status"] == WARN  # nothing has run yet
    assert checks["clock"]["status"] == OK
    assert checks["docker"]["status"] == OK  # this machine has an engine
    assert "API" in checks["docker"]["detail"]
    assert checks["channel:alerts"]["status"] == WARN
    assert "not configured" in checks["channel:alerts"]["detail"]
    assert checks["channel:journal"]["status"] == WARN
    assert checks["journal"]["status"] == OK
    assert checks["daemon"]["status"] == WARN
    assert "never started" in checks["daemon"]["detail"]
    assert code == 0
    assert not (tmp_path / "journal").exists()  # doctor changes nothing


def test_a_configured_database_and_the_human_readable_form(aegis_env: dict[str, str]) -> None:
    code, checks, _ = doctor(aegis_env)
    assert checks["database"]["status"] == OK
    assert "embedded" not in checks["database"]["detail"]
    assert checks["migrations"] == {"check": "migrations", "status": OK,
                                    "detail": "schema is current", "hint": ""}
    assert code == 0

    text = run_cli("doctor", env=aegis_env, timeout=120)
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].split()[:2] == ["ok", "database"]
    assert "fix: set DISCORD_WEBHOOK_URL or AEGIS_NOTIFY_URLS" in text.stdout


def test_pending_migrations_are_named(aegis_env: dict[str, str], empty_database_url: str) -> None:
    code, checks, _ = doctor({**aegis_env, "AEGIS_DATABASE_URL": empty_database_url})
    assert checks["migrations"]["status"] == WARN
    assert "0001_foundation" in checks["migrations"]["detail"]
    assert "aegis db migrate" in checks["migrations"]["hint"]
    assert code == 0


def test_an_unreachable_database_fails_without_showing_its_password(
        aegis_env: dict[str, str]) -> None:
    env = {**aegis_env, "AEGIS_DATABASE_URL": "postgresql://aegis:hunter2pw@127.0.0.1:1/aegis"}
    code, checks, output = doctor(env)
    assert checks["database"]["status"] == FAIL
    assert "127.0.0.1" in checks["database"]["detail"]
    assert checks["migrations"]["status"] == WARN
    assert checks["clock"]["status"] == WARN
    assert "hunter2pw" not in output
    assert code == 1


def test_a_stale_daemon_fails_and_a_running_one_is_ok(
        aegis_env: dict[str, str], aegis_home: Path) -> None:
    now = datetime.now(UTC)

    def beat(age_s: float) -> None:
        write_heartbeat(aegis_home, Heartbeat(
            pid=os.getpid(), host="test-host", instance_id="i", version="t",
            started_at=now - timedelta(hours=1),
            last_heartbeat_at=now - timedelta(seconds=age_s), status="running"))

    beat(age_s=600)
    code, checks, _ = doctor(aegis_env)
    assert checks["daemon"]["status"] == FAIL
    assert checks["daemon"]["detail"].startswith("stale")
    assert code == 1

    beat(age_s=0)
    code, checks, _ = doctor(aegis_env)
    assert checks["daemon"]["status"] == OK
    assert code == 0


def test_channels_report_last_delivery_and_the_latest_failure_redacted(
        aegis_env: dict[str, str], database_url: str) -> None:
    env = {**aegis_env, "DISCORD_WEBHOOK_URL": WEBHOOK,
           "AEGIS_JOURNAL_NOTIFY_URLS": "json://127.0.0.1:9/hook"}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO outbox (channel, dedup_key, host, title, status, delivered_at) "
                     "VALUES ('alerts', 'a1', 'h', 't', 'delivered', now())")
        conn.execute("INSERT INTO outbox (channel, dedup_key, host, title, status) "
                     "VALUES ('journal', 'j1', 'h', 't', 'delivered')")
    code, checks, output = doctor(env)
    assert checks["channel:alerts"]["status"] == OK
    assert "discord (discord.com)" in checks["channel:alerts"]["detail"]
    assert "last delivery" in checks["channel:alerts"]["detail"]
    assert checks["channel:journal"]["status"] == OK
    assert "apprise json://" in checks["channel:journal"]["detail"]
    assert code == 0

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO outbox (channel, dedup_key, host, title, status, last_error) "
                     "VALUES ('alerts', 'a2', 'h', 't', 'undeliverable', %s)",
                     (f"404 Unknown Webhook from {WEBHOOK}",))
        conn.execute("INSERT INTO outbox (channel, dedup_key, host, title, status, created_at) "
                     "VALUES ('journal', 'j2', 'h', 't', 'pending', now() - interval '1 hour')")
    code, checks, output = doctor(env)
    assert checks["channel:alerts"]["status"] == FAIL
    assert "404 Unknown Webhook" in checks["channel:alerts"]["detail"]
    assert "aegis notify test --channel alerts" in checks["channel:alerts"]["hint"]
    assert checks["channel:journal"]["status"] == WARN
    assert "1 pending, oldest 60 min" in checks["channel:journal"]["detail"]
    assert WEBHOOK_TOKEN not in output
    assert code == 1


def test_docker_unreachable_fails_unless_remediation_is_off(
        aegis_env: dict[str, str], tmp_path: Path) -> None:
    env = {**aegis_env, "DOCKER_HOST": f"unix://{tmp_path}/missing.sock"}
    code, checks, _ = doctor(env)
    assert checks["docker"]["status"] == FAIL
    assert "missing.sock" in checks["docker"]["detail"]
    assert code == 1

    code, checks, _ = doctor({**env, "AEGIS_REMEDIATION": "off"})
    assert checks["docker"]["status"] == WARN
    assert code == 0


NOW_FOR_WINDOWS = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)


def test_the_configured_maintenance_windows_are_listed(tmp_path: Path) -> None:
    assert check_maintenance_windows(Settings(), NOW_FOR_WINDOWS).detail == \
        "no [[maintenance]] window configured"
    settings = Settings(timezone="Europe/Berlin", maintenance_tables=(
        {"name": "backup", "containers": ["db", "shop/*"], "schedule": "02:00",
         "duration": "1h"},))
    found = check_maintenance_windows(settings, NOW_FOR_WINDOWS)
    assert (found.check, found.status) == ("maintenance", OK)
    # the day the clocks sprang forward: the next 02:00 is summer time's, 00:00 UTC
    assert found.detail == ("backup: daily at 02:00 Europe/Berlin for 1h, covers db, "
                            "shop/*; next 2026-03-30 00:00 UTC")


def test_journal_folder_checks(tmp_path: Path) -> None:
    assert check_journal_dir(tmp_path).status == OK
    assert not list(tmp_path.iterdir())  # the probe file is gone
    assert check_journal_dir(tmp_path / "a" / "b").status == OK
    (tmp_path / "file").write_text("x")
    taken = check_journal_dir(tmp_path / "file")
    assert (taken.status, taken.detail) == (FAIL, f"{tmp_path / 'file'} exists and is not a "
                                                  "folder")


@pytest.mark.parametrize(("skew_s", "status"), [
    (0.0, OK), (1.9, OK), (-1.9, OK), (2.0, WARN), (-10.0, WARN), (29.9, WARN),
    (30.0, FAIL), (-3600.0, FAIL),
])
def test_clock_skew_thresholds(skew_s: float, status: str) -> None:
    database_now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    check = clock_check(database_now, database_now + timedelta(seconds=skew_s))
    assert check.status == status
    assert ("ahead of" if skew_s >= 0 else "behind") in check.detail


@pytest.mark.docker
def test_docker_behind_a_socket_proxy_names_what_the_proxy_forbids(
        aegis_env: dict[str, str], socket_proxy: Callable[[dict[str, str]], str]) -> None:
    profile = socket_proxy_profile()  # compose.yaml's allow-list
    url = socket_proxy(profile)
    code, checks, _ = doctor({**aegis_env, "DOCKER_HOST": url})
    assert checks["docker"]["status"] == OK, checks["docker"]
    assert f"at {url}," in checks["docker"]["detail"]
    assert code == 0

    no_restarts = socket_proxy({**profile, "ALLOW_RESTARTS": "0"})
    code, checks, _ = doctor({**aegis_env, "DOCKER_HOST": no_restarts})
    assert checks["docker"]["status"] == FAIL, checks["docker"]
    assert checks["docker"]["detail"].endswith("; forbidden (403): container restarts")
    assert "ALLOW_RESTARTS" in checks["docker"]["hint"]
    assert "AEGIS_REMEDIATION=observe" in checks["docker"]["hint"]
    assert code == 1
    # observe mode never restarts: nothing it needs is forbidden
    _, checks, _ = doctor({**aegis_env, "DOCKER_HOST": no_restarts,
                           "AEGIS_REMEDIATION": "observe"})
    assert checks["docker"]["status"] == OK, checks["docker"]

    no_events = socket_proxy({**profile, "EVENTS": "0"})
    _, checks, _ = doctor({**aegis_env, "DOCKER_HOST": no_events})
    assert checks["docker"]["status"] == FAIL, checks["docker"]
    assert checks["docker"]["detail"].endswith("; forbidden (403): the event stream")

    no_containers = socket_proxy({**profile, "CONTAINERS": "0"})
    _, checks, _ = doctor({**aegis_env, "DOCKER_HOST": no_containers})
    assert checks["docker"]["status"] == FAIL, checks["docker"]
    assert "403" in checks["docker"]["detail"]
    assert "CONTAINERS" in checks["docker"]["hint"]


def test_the_escalation_route_is_checked_like_the_other_channels(
        aegis_env: dict[str, str], database_url: str) -> None:
    code, checks, _ = doctor(aegis_env)
    assert checks["channel:escalation"]["status"] == OK
    assert checks["channel:escalation"]["detail"] == "off (AEGIS_ESCALATE_AFTER unset)"

    env = {**aegis_env, "AEGIS_ESCALATE_AFTER": "15m",
           "AEGIS_ESCALATION_URLS": f"{WEBHOOK},ntfy://ntfy.sh/oncall"}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO outbox (channel, dedup_key, host, title, status, last_error) "
                     "VALUES ('escalation', 'p1', 'h', 't', 'failed', %s)",
                     (f"404 Unknown Webhook from {WEBHOOK}",))
    code, checks, output = doctor(env)
    check = checks["channel:escalation"]
    assert check["status"] == FAIL
    assert check["detail"].startswith("discord (discord.com), apprise ntfy://; ")
    assert "404 Unknown Webhook" in check["detail"]
    assert "aegis notify test --channel escalation" in check["hint"]
    assert WEBHOOK_TOKEN not in output
    assert code == 1


def test_doctor_fails_label_jobs_behind_a_proxy_that_forbids_exec(
        aegis_env: dict[str, str], socket_proxy: Callable[[dict[str, str]], str],
        make_container: Callable[..., Any]) -> None:
    make_container("sleep 600", healthcheck=None, labels={
        "aegis.job.tick.schedule": "@hourly", "aegis.job.tick.command": "true"})
    profile = socket_proxy_profile()  # compose.yaml's allow-list: no EXEC, no POST
    _, checks, _ = doctor({**aegis_env, "DOCKER_HOST": socket_proxy(profile)})
    assert checks["label_jobs_exec"]["status"] == FAIL
    assert "EXEC=1 and POST=1" in checks["label_jobs_exec"]["hint"]
    with_exec = socket_proxy({**profile, "EXEC": "1", "POST": "1"})
    _, checks, _ = doctor({**aegis_env, "DOCKER_HOST": with_exec})
    assert "label_jobs_exec" not in checks
    assert checks["label_jobs"]["status"] == OK
