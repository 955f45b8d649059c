"""A fresh machine with nothing configured: `aegis run --once` on the embedded database."""

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import run_cli, sql_rows


@pytest.fixture
def fresh_home(tmp_path: Path):
    home = tmp_path / "aegis"
    yield home
    pid_file = home / "pgdata" / "postmaster.pid"
    if pid_file.exists():  # stop the embedded server `aegis db url` left running
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


def test_run_once_on_a_fresh_machine_runs_health_check(fresh_home, tmp_path):
    env = {"AEGIS_HOME": str(fresh_home), "AEGIS_JOURNAL_DIR": str(tmp_path / "journal"),
           "HOME": str(tmp_path)}
    result = run_cli("run", "--once", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert '"event": "health_check_complete"' in result.stderr

    url = run_cli("db", "url", env=env).stdout.strip()
    runs = sql_rows(url, "SELECT job_id, status, trigger FROM job_runs "
                         "WHERE job_id = 'health_check'")
    assert runs == [{"job_id": "health_check", "status": "ok", "trigger": "catch_up"}]
    state = {r["key"]: r["value"] for r in sql_rows(url, "SELECT key, value FROM state")}
    assert state["db_healthy"] is True
    assert "last_health_check" in state
    status = run_cli("status", "--json", env=env)
    assert '"status": "stopped"' in status.stdout
    assert run_cli("check", env=env).returncode == 1
