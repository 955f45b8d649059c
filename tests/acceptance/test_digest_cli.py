"""``aegis digest`` as a subprocess: any past day's digest from the database alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.rows import sql_rows
from tests.support.seeds import seed_day


def test_digest_stdout_prints_a_past_day(aegis_env: dict[str, str],
                                         database_url: str) -> None:
    seed_day(database_url)
    result = run_cli("digest", "--date", "2026-03-01", "--stdout", "--fleet", env=aegis_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# aegis digest — 2026-03-01\n")
    assert "2026-03-02 00:00, every host.\n" in result.stdout
    assert "- Runs: 8 completed, 4 failed, 1 still running, 1 missed\n" in result.stdout
    assert "- Events: 17 recorded, 3 critical\n" in result.stdout
    assert not Path(aegis_env["AEGIS_JOURNAL_DIR"]).exists()


def test_digest_scope_is_this_host_unless_told(aegis_env: dict[str, str],
                                               database_url: str) -> None:
    """AEGIS_DIGEST_SCOPE=host (the default) covers AEGIS_HOST; --host names another,
    AEGIS_DIGEST_SCOPE=fleet or --fleet covers every host."""
    seed_day(database_url)

    def events_line(*args: str, **env: str) -> str:
        result = run_cli("digest", "--date", "2026-03-01", "--stdout", *args,
                         env={**aegis_env, **env})
        assert result.returncode == 0, result.stderr
        return next(line for line in result.stdout.split("\n") if line.startswith("- Events"))

    assert events_line() == "- Events: 0 recorded, 0 critical"  # test-host recorded none
    assert events_line(AEGIS_HOST="host-b") == "- Events: 4 recorded, 1 critical"
    assert events_line("--host", "host-a") == "- Events: 13 recorded, 2 critical"
    assert events_line(AEGIS_DIGEST_SCOPE="fleet") == "- Events: 17 recorded, 3 critical"
    refused = run_cli("digest", "--host", "host-a", "--fleet", env=aegis_env)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == "aegis: --host and --fleet cannot be used together\n"


def test_digest_writes_the_journal_file_and_matches_stdout(aegis_env: dict[str, str],
                                                           database_url: str) -> None:
    seed_day(database_url)
    written = run_cli("digest", "--date", "2026-03-01", env=aegis_env)
    assert written.returncode == 0, written.stderr
    path = Path(aegis_env["AEGIS_JOURNAL_DIR"]) / "2026-03-01.md"
    assert written.stdout.strip() == str(path)
    printed = run_cli("digest", "--date", "2026-03-01", "--stdout", env=aegis_env)
    assert path.read_text(encoding="utf-8") == printed.stdout
    again = run_cli("digest", "--date", "2026-03-01", env=aegis_env)
    assert again.returncode == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["2026-03-01.md"]


def test_digest_without_a_date_is_today(aegis_env: dict[str, str]) -> None:
    from aegis.core.clock import utcnow

    result = run_cli("digest", "--stdout", env=aegis_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"# aegis digest — {utcnow().date().isoformat()}\n")


@pytest.mark.parametrize(("value", "message"), [
    ("2026-13-01", "is not a date (YYYY-MM-DD)"),
    ("tomorrow", "is not a date (YYYY-MM-DD)"),
    ("2999-01-01", "is in the future"),
])
def test_a_bad_date_is_one_line_and_exit_2(aegis_env: dict[str, str], value: str,
                                           message: str) -> None:
    result = run_cli("digest", "--date", value, env=aegis_env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert result.stdout == ""
    assert not Path(aegis_env["AEGIS_JOURNAL_DIR"]).exists()


def test_an_unwritable_journal_dir_is_one_line_and_exit_1(aegis_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = run_cli("digest", "--date", "2026-03-01",
                     env={**aegis_env, "AEGIS_JOURNAL_DIR": str(blocker / "journal")})
    assert result.returncode == 1
    assert result.stderr.startswith("aegis: cannot write the journal file in ")
    assert result.stderr.count("\n") == 1


def test_a_queued_evening_summary_runs_through_the_daemon(aegis_env: dict[str, str],
                                                          database_url: str) -> None:
    """The job as the daemon runs it: registered from jobs/, claimed, handed a context."""
    seed_day(database_url)
    queued = run_cli("tasks", "add", "evening_summary", "--arg", "date=2026-03-01",
                     env=aegis_env)
    assert queued.returncode == 0, queued.stderr
    ran = run_cli("run", "--once", env=aegis_env, timeout=120)
    [task] = sql_rows(database_url, "SELECT status, error FROM tasks "
                      "WHERE job_id = 'evening_summary'")
    assert task["status"] == "done", (task, ran.stderr[-2000:])
    path = Path(aegis_env["AEGIS_JOURNAL_DIR"]) / "2026-03-01.md"
    printed = run_cli("digest", "--date", "2026-03-01", "--stdout", env=aegis_env)
    assert path.read_text(encoding="utf-8") == printed.stdout
    assert '"event": "evening_summary_generated"' in ran.stderr
