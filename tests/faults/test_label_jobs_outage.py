"""PostgreSQL stopped under a daemon running a label job, on a server of this test's own:
the job's slots keep running in its container meanwhile (a job of this host's container
needs no claim from others), and their runs are written back once when the database is
back, one per slot."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.containers import IDLE
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.postgres import OwnPostgres
from tests.support.rows import runs_of
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker]
OUTAGE_S = 8.0


def test_a_label_job_runs_through_a_postgres_outage_and_its_runs_are_written_back_once(
        own_postgres: OwnPostgres, aegis_home: Path, tmp_path: Path, spawn: Spawner,
        make_container: Callable[..., Any]) -> None:
    url = own_postgres.url
    env = daemon_env({"AEGIS_DATABASE_URL": url, "AEGIS_HOME": str(aegis_home),
                      "AEGIS_JOURNAL_DIR": str(tmp_path / "journal"),
                      "AEGIS_HOST": "test-host", "AEGIS_LOG_FORMAT": "json",
                      "AEGIS_HTTP_ADDR": "off"}, AEGIS_JOB_MODULES="")
    daemon = spawn(env)
    wait_for(daemon_running(url), what="daemon")
    container = make_container(IDLE, healthcheck=None, labels={
        "aegis.job.tick.schedule": "@every 2s", "aegis.job.tick.command": "echo tick"})
    job_id = f"{container.name}.tick"
    wait_for(lambda: runs_of(url, job_id, "ok"), timeout_s=20, what="a first run")

    down_at = datetime.now(UTC)
    own_postgres.stop()
    time.sleep(OUTAGE_S)
    assert daemon.poll() is None, "the daemon exited during the outage"
    up_at = datetime.now(UTC)
    own_postgres.start()

    def offline_runs() -> list[dict[str, Any]]:
        return [r for r in runs_of(url, job_id, "ok")
                if down_at < r["scheduled_for"] < up_at]

    wait_for(lambda: len(offline_runs()) >= OUTAGE_S / 2 - 2, timeout_s=60,
             what="the outage's runs written back")
    written = offline_runs()
    assert all(r["result"]["output"] == "tick\n" for r in written)
    slots = [r["scheduled_for"] for r in runs_of(url, job_id)]
    assert len(slots) == len(set(slots))
    wait_for(lambda: len(runs_of(url, job_id, "ok")) > len(written) + 2, timeout_s=20,
             what="runs going on after the outage")
