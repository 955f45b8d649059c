"""A fresh machine with nothing configured: `aegis run --once` on the embedded database."""



from pathlib import Path

from tests.support.cli import run_cli
from tests.support.rows import sql_rows


def test_run_once_on_a_fresh_machine_runs_health_check(fresh_home: Path, tmp_path: Path) -> None:
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
