"""aegis containers, ack and maintenance as an operator runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from tests.support.cli import columns, run_cli
from tests.support.rows import sql_rows

ESCALATED_ROW = """
INSERT INTO containers (host, name, container_id, image, health, has_healthcheck, state, phase,
                        strikes, incident, strike_at, restarts, last_action, last_action_at)
VALUES ('test-host', 'web', 'abcdef0123456789', 'nginx:1', 'unhealthy', true, 'escalated',
        'escalated', 3, 2, %(at)s, ARRAY[%(at)s]::timestamptz[], 'escalate', %(at)s)
"""


def seed_escalated(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ESCALATED_ROW, {"at": datetime.now(UTC)})


def test_containers_json_ack_and_maintenance(aegis_env: dict[str, str],
                                             database_url: str) -> None:
    seed_escalated(database_url)
    listed = run_cli("containers", "--json", env=aegis_env)
    assert listed.returncode == 0, listed.stderr
    [web] = json.loads(listed.stdout)
    assert {k: web[k] for k in ("name", "id", "image", "health", "strikes", "state",
                                "last_action", "restarts_last_hour", "host")} == {
        "name": "web", "id": "abcdef012345", "image": "nginx:1", "health": "unhealthy",
        "strikes": 3, "state": "escalated", "last_action": "escalate",
        "restarts_last_hour": 1, "host": "test-host"}
    assert web["last_action_at"]

    table = run_cli("containers", env=aegis_env)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "IMAGE", "HEALTH", "STRIKES", "STATE",
                              "LAST_ACTION", "AT", "RESTARTS_1H", "NEXT_WINDOW", "HOST"]
    assert len(lines) == 1
    assert columns(header, lines[0]) == {
        "NAME": "web", "ID": "abcdef012345", "IMAGE": "nginx:1", "HEALTH": "unhealthy",
        "STRIKES": "3", "STATE": "escalated", "LAST_ACTION": "escalate",
        "AT": datetime.fromisoformat(web["last_action_at"]).strftime("%Y-%m-%d %H:%M:%S"),
        "RESTARTS_1H": "1", "NEXT_WINDOW": "-", "HOST": "test-host"}

    acked = run_cli("ack", "web", env=aegis_env)
    assert acked.returncode == 0, acked.stderr
    assert "acknowledged" in acked.stdout
    assert sql_rows(database_url, "SELECT state, strikes FROM containers") == \
        [{"state": "ok", "strikes": 0}]
    again = run_cli("ack", "web", env=aegis_env)
    assert again.returncode == 0
    assert "not escalated" in again.stdout
    assert sql_rows(database_url, "SELECT count(*) AS n FROM episodic_memory "
                    "WHERE event_type = 'container_acknowledged'") == [{"n": 1}]

    paused = run_cli("maintenance", "web", "--for", "1h", env=aegis_env)
    assert paused.returncode == 0, paused.stderr
    shown = json.loads(run_cli("containers", "--json", env=aegis_env).stdout)
    assert shown[0]["state"] == "maintenance"
    resumed = run_cli("maintenance", "web", "--off", env=aegis_env)
    assert resumed.returncode == 0
    shown = json.loads(run_cli("containers", "--json", env=aegis_env).stdout)
    assert shown[0]["state"] == "ok"


def test_bad_input_is_one_line_and_exit_2(aegis_env: dict[str, str],
                                          database_url: str) -> None:
    seed_escalated(database_url)
    for args, message in [
        (("ack", "nope"), "no container 'nope' on host 'test-host'"),
        # a typo must not look like a container put into maintenance
        (("maintenance", "nope", "--for", "1h"), "no container 'nope' on host 'test-host'"),
        (("maintenance", "nope", "--off"), "no container 'nope' on host 'test-host'"),
        (("maintenance", "web", "--for", "soon"), "--for:"),
        (("maintenance", "web"), "either --for DURATION or --off"),
        (("maintenance", "web", "--for", "1h", "--off"), "either --for DURATION or --off"),
    ]:
        result = run_cli(*args, env=aegis_env)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert message in result.stderr
    assert sql_rows(database_url, "SELECT name, maintenance_until FROM containers") == \
        [{"name": "web", "maintenance_until": None}]
    assert sql_rows(database_url, "SELECT event_type FROM episodic_memory") == []


def test_containers_show_the_next_maintenance_window(aegis_env: dict[str, str],
                                                     database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "aegis.toml"
    config.write_text('[[maintenance]]\nname = "backup"\ncontainers = ["w*"]\n'
                      'schedule = "02:00"\nduration = "1h"\n', encoding="utf-8")
    seed_escalated(database_url)
    env = {**aegis_env, "AEGIS_CONFIG": str(config), "AEGIS_TIMEZONE": "Europe/Berlin"}
    [web] = json.loads(run_cli("containers", "--json", env=env).stdout)
    start = datetime.fromisoformat(web["window_start"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (web["window"], start.strftime("%H:%M")) == ("backup", "02:00")
    assert datetime.fromisoformat(web["window_end"]) - start == timedelta(hours=1)
    table = run_cli("containers", env=env)
    header, line = table.stdout.splitlines()
    assert columns(header, line)["NEXT_WINDOW"].startswith(f"{start:%Y-%m-%d} 02:00:00 +0")
