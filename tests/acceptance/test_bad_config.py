"""Bad configuration through the real ``aegis`` command: exit code 2, exactly one line on
stderr naming the variable or key, and nothing written (no AEGIS_HOME, no journal folder,
no schema in the database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bad_config import BAD_INPUTS, BadInput, materialize
from tests.support.cli import run_cli
from tests.support.rows import sql_rows

TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"


@pytest.fixture
def clean_env(empty_database_url: str, tmp_path: Path) -> dict[str, str]:
    """A runnable configuration on an empty database; the folders do not exist yet."""
    return {
        "AEGIS_DATABASE_URL": empty_database_url,
        "AEGIS_HOME": str(tmp_path / "home"),
        "AEGIS_JOURNAL_DIR": str(tmp_path / "journal"),
        "HOME": str(tmp_path / "user"),
        "AEGIS_LOG_FORMAT": "json",
    }


def assert_nothing_written(database_url: str, tmp_path: Path) -> None:
    assert not (tmp_path / "home").exists()
    assert not (tmp_path / "journal").exists()
    assert not (tmp_path / "user").exists()
    assert sql_rows(database_url, TABLES) == []


def test_the_good_configuration_writes(clean_env: dict[str, str],
                                       empty_database_url: str) -> None:
    """The control: without the bad value the same command migrates the database."""
    result = run_cli("db", "migrate", env=clean_env)
    assert result.returncode == 0, result.stderr
    tables = {row["table_name"] for row in sql_rows(empty_database_url, TABLES)}
    assert {"schema_migrations", "state", "episodic_memory"} <= tables


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.id)
def test_bad_configuration_exits_2_with_one_line_and_writes_nothing(
    case: BadInput, clean_env: dict[str, str], empty_database_url: str, tmp_path: Path,
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    env = {**clean_env, **materialize(case, config_dir)}
    result = run_cli("db", "migrate", env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aegis: configuration error: ")
    assert case.names in lines[0]
    assert case.hint in lines[0]
    for secret in case.secret_free:
        assert secret not in result.stderr
    assert result.stdout == ""
    assert_nothing_written(empty_database_url, tmp_path)


def test_the_version_needs_no_configuration(tmp_path: Path) -> None:
    result = run_cli("--version", env={"POSTGRES_PORT": "abc",
                                       "AEGIS_HOME": str(tmp_path / "home")})
    assert result.returncode == 0
    assert result.stdout.startswith("aegis, version ")
    assert not (tmp_path / "home").exists()
