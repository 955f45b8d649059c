"""Rolling upgrades as an operator meets them (docs/upgrading.md): `aegis db migrate
--check` says what would run without applying it; a schema a newer aegis migrated is run
on when it declares this aegis compatible, and refused otherwise (`aegis run` and `aegis
db migrate` exit 4 with one line naming both versions and what to do, nothing written);
a schema aegis 0.1 left gets its compatibility recorded."""

from __future__ import annotations

from pathlib import Path

import psycopg

from aegis.storage.queries import migrations
from aegis.version import __version__
from tests.support.cli import run_cli
from tests.support.rows import execute, sql_rows

ALL = [name for name, _ in migrations()]
FUTURE = "9999_future"


def compatibility_rows(url: str) -> dict[str, str | None]:
    return {row["name"]: row["compatible_with"] for row in sql_rows(
        url, "SELECT name, compatible_with FROM schema_migrations ORDER BY name")}


def cli_env(url: str, tmp_path: Path) -> dict[str, str]:
    return {"AEGIS_DATABASE_URL": url, "AEGIS_HOME": str(tmp_path / "home"),
            "AEGIS_JOURNAL_DIR": str(tmp_path / "journal"), "AEGIS_HTTP_ADDR": "off"}


def test_check_says_what_would_run_and_applies_nothing(empty_database_url: str,
                                                       tmp_path: Path) -> None:
    env = cli_env(empty_database_url, tmp_path)
    pending = run_cli("db", "migrate", "--check", env=env)
    assert pending.returncode == 3, pending.stderr
    assert pending.stdout == f"{len(ALL)} migration(s) pending: {', '.join(ALL)}\n"
    assert sql_rows(empty_database_url, "SELECT to_regclass('schema_migrations') AS t") == [
        {"t": None}]

    assert run_cli("db", "migrate", env=env).returncode == 0
    current = run_cli("db", "migrate", "--check", env=env)
    assert (current.returncode, current.stdout) == (0, "database is up to date\n")
    assert set(compatibility_rows(empty_database_url).values()) == {"0.1"}


def test_a_schema_a_newer_aegis_declares_this_one_too_old_for_is_refused(
        aegis_env: dict[str, str], database_url: str) -> None:
    execute(database_url, "INSERT INTO schema_migrations (name, compatible_with) "
                          "VALUES (%s, '0.99')", FUTURE)
    before = compatibility_rows(database_url)
    message = (f"aegis: the database's schema needs aegis 0.99 or later (migrations {FUTURE}); "
               f"this is aegis {__version__}: upgrade aegis on this host (a schema is never "
               "migrated back)\n")

    daemon = run_cli("run", env=aegis_env, timeout=60)
    assert (daemon.returncode, daemon.stderr) == (4, message)
    for args in (("db", "migrate"), ("db", "migrate", "--check")):
        result = run_cli(*args, env=aegis_env)
        assert result.returncode == 4, args
        assert result.stderr == message
        assert result.stdout == ("" if args == ("db", "migrate") else
                                 f"1 migration(s) of a newer aegis applied: {FUTURE}\n")

    assert compatibility_rows(database_url) == before
    assert sql_rows(database_url, "SELECT count(*) AS n FROM daemons") == [{"n": 0}]
    assert sql_rows(database_url, "SELECT count(*) AS n FROM episodic_memory") == [{"n": 0}]
    doctor = run_cli("doctor", env=aegis_env)
    assert doctor.returncode == 1
    assert "needs aegis 0.99 or later" in doctor.stdout


def test_a_newer_schema_that_declares_this_aegis_compatible_is_run_on(
        aegis_env: dict[str, str], database_url: str) -> None:
    execute(database_url, "INSERT INTO schema_migrations (name, compatible_with) "
                          "VALUES (%s, '0.1')", FUTURE)
    check = run_cli("db", "migrate", "--check", env=aegis_env)
    assert check.returncode == 0, check.stderr
    assert check.stdout == (f"1 migration(s) of a newer aegis applied: {FUTURE}\n"
                            f"compatible: they allow aegis 0.1 and later; this is aegis "
                            f"{__version__}\ndatabase is up to date\n")

    doctor = run_cli("doctor", env=aegis_env)
    assert (f"migrations of a newer aegis applied ({FUTURE}), which allow aegis 0.1 and "
            f"later: this is aegis {__version__}") in doctor.stdout
    once = run_cli("run", "--once", env={**aegis_env, "AEGIS_JOB_MODULES": ""}, timeout=120)
    assert once.returncode == 0, once.stderr
    assert sql_rows(database_url, "SELECT status FROM daemons") == [{"status": "stopped"}]


def test_the_migrations_aegis_0_1_applied_get_their_compatibility_recorded(
        empty_database_url: str, tmp_path: Path) -> None:
    """aegis 0.1's table has no compatible_with column: --check reads it as it is, the
    next migrate adds the column and fills it in."""
    of_0_1 = [(name, script) for name, script in migrations() if name[:4] <= "0010"]
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for name, script in of_0_1:
            conn.execute(script.encode())
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
    env = cli_env(empty_database_url, tmp_path)
    later = ALL[len(of_0_1):]

    check = run_cli("db", "migrate", "--check", env=env)
    assert check.returncode == 3, check.stderr
    assert check.stdout == f"{len(later)} migration(s) pending: {', '.join(later)}\n"
    assert sql_rows(empty_database_url, "SELECT count(*) AS n FROM information_schema.columns "
                    "WHERE table_name = 'schema_migrations'") == [{"n": 2}]

    migrate = run_cli("db", "migrate", env=env)
    assert migrate.stdout == f"applied {len(later)} migration(s): {', '.join(later)}\n"
    assert compatibility_rows(empty_database_url) == dict.fromkeys(ALL, "0.1")
