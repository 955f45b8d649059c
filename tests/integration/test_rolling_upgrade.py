"""A rolling upgrade (docs/upgrading.md): the previous release's daemon, built from git
history (tag v0.1.0) into a virtualenv of its own, migrates an empty database and runs; the
current daemon joins on another host name, migrating the schema on to this release's while
the old one runs; the old one is restarted on the new schema; both run side by side for
minutes, competing for the slots of a cluster job (which the current one, claiming ahead,
wins; stopped, the old one takes them over) and each healing a container of its own.
Neither logs an error, no slot runs twice, both containers are healed by their own host."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aegis.storage.queries import migrations
from aegis.version import __version__
from tests.support.containers import HEALS, make_unhealthy, wait_health
from tests.support.daemons import Spawner, supervising_env
from tests.support.releases import Release, install_release
from tests.support.rows import sql_rows
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.serial,
              pytest.mark.timeout(600)]

PREVIOUS = "v0.1.0"
# how long both releases run side by side after the old one's restart
TOGETHER_S = 120.0
OLD, NEW = "old-host", "new-host"
ALL = [name for name, _ in migrations()]


@dataclass(frozen=True)
class Boxes:
    """A container for each release to heal, and the engine they run on."""

    client: Any
    old: Any  # labelled aegis-test-old=true
    new: Any  # labelled aegis-test-new=true


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    return install_release(PREVIOUS, tmp_path_factory.mktemp("release"))


@pytest.fixture
def boxes(make_container: Callable[..., Any], docker_client: Any) -> Boxes:
    return Boxes(client=docker_client,
                 old=make_container(HEALS, labels={"aegis-test-old": "true"}),
                 new=make_container(HEALS, labels={"aegis-test-new": "true"}))


def release_env(url: str, folder: Path, host: str, label: str) -> dict[str, str]:
    """A daemon of ``host`` running the ticking cluster job (tests/jobmods/tick.py) and
    healing the containers labelled ``label=true`` (docker-autoheal's label, which every
    release reads): 2 s strikes, 3 s stable period, logging at info."""
    base = {"AEGIS_DATABASE_URL": url, "AEGIS_HOME": str(folder / host),
            "AEGIS_JOURNAL_DIR": str(folder / host / "journal"), "AEGIS_HOST": host,
            "AEGIS_LOG_FORMAT": "json", "AEGIS_HTTP_ADDR": "off"}
    return {**supervising_env(base, AEGIS_DOCKER_SCOPE="labeled",
                              AUTOHEAL_CONTAINER_LABEL=label, AEGIS_STRIKE_INTERVAL="2s",
                              AEGIS_STABLE_PERIOD="3s", AEGIS_LOG_LEVEL="info",
                              AEGIS_LABEL_JOBS="off"),
            "AEGIS_JOB_MODULES": "tests.jobmods.tick"}


def daemon_of_release(url: str, host: str, version: str) -> Callable[[], bool]:
    """Whether aegis ``version`` runs as ``host`` (False before any migration)."""
    def up() -> bool:
        if sql_rows(url, "SELECT to_regclass('daemons') AS t")[0]["t"] is None:
            return False
        return bool(sql_rows(url, "SELECT 1 FROM daemons WHERE host = %s AND status = "
                                  "'running' AND version = %s", host, version))
    return up


def healed_by_host(url: str, host: str, container: str, times: int = 1) -> Callable[[], bool]:
    """Whether ``host`` restarted ``container`` ``times`` times and saw it recover after
    the last."""
    def healed() -> bool:
        types = [row["event_type"] for row in sql_rows(
            url, "SELECT event_type FROM episodic_memory WHERE host = %s AND "
                 "details->>'container' = %s AND event_type IN ('container_restarted', "
                 "'container_recovered') ORDER BY id", host, container)]
        return (types.count("container_restarted") == times
                and types[-1] == "container_recovered")
    return healed


def error_lines(log: str) -> list[str]:
    """The lines of a daemon's log at error level or above, and any traceback."""
    found = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                found.append(line)
            continue
        if isinstance(entry, dict) and entry.get("level") in {"error", "critical"}:
            found.append(line)
    return found


def stop_daemon(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(60)


def test_the_previous_release_and_this_one_share_a_database_through_an_upgrade(
        previous_release: Release, empty_database_url: str, tmp_path: Path, spawn: Spawner,
        boxes: Boxes) -> None:
    url = empty_database_url
    old_version = previous_release.version()
    assert old_version != __version__
    old_env = {**release_env(url, tmp_path, OLD, "aegis-test-old"),
               "PYTHONPATH": str(previous_release.source)}

    def start_old() -> subprocess.Popen[bytes]:
        return spawn(old_env, python=previous_release.python, cwd=previous_release.source)

    # the previous release alone, on an empty database: its own migrations
    old = start_old()
    wait_for(daemon_of_release(url, OLD, old_version), 60, "the previous release's daemon")
    of_previous = [row["name"] for row in sql_rows(
        url, "SELECT name FROM schema_migrations ORDER BY name")]
    assert of_previous == [name for name in ALL if name[:4] <= "0010"]

    # this release joins and migrates the schema on while the old one runs
    new = spawn(release_env(url, tmp_path, NEW, "aegis-test-new"))
    wait_for(daemon_of_release(url, NEW, __version__), 60, "this release's daemon")
    assert sql_rows(url, "SELECT name, compatible_with FROM schema_migrations "
                         "ORDER BY name") == [{"name": n, "compatible_with": "0.1"} for n in ALL]

    # each heals its own container, side by side
    make_unhealthy(boxes.client, boxes.old)
    make_unhealthy(boxes.client, boxes.new)
    wait_for(healed_by_host(url, OLD, boxes.old.name), 60, "the old release to heal its container")
    wait_for(healed_by_host(url, NEW, boxes.new.name), 60, "this release to heal its container")

    # the previous release restarted on this release's schema
    assert stop_daemon(old) == 0
    old = start_old()
    wait_for(daemon_of_release(url, OLD, old_version), 60, "the previous release, restarted")
    together_since = sql_rows(url, "SELECT now() AS now")[0]["now"]
    time.sleep(TOGETHER_S)
    make_unhealthy(boxes.client, boxes.old)  # healed again, by the restarted old daemon
    wait_for(healed_by_host(url, OLD, boxes.old.name, times=2), 60,
             "the restarted old release to heal its container again")
    wait_health(boxes.client, boxes.old, "healthy")

    # this release claims a slot 0.1 s before it is due, so while both run it wins the
    # slots they both want; stopped, its slots go to the previous release, which claims
    # them on this release's schema
    assert stop_daemon(new) == 0
    alone_since = sql_rows(url, "SELECT now() AS now")[0]["now"]
    wait_for(lambda: sql_rows(url, "SELECT 1 FROM episodic_memory WHERE event_type = "
                                   "'tick_ran' AND host = %s AND timestamp > %s",
                              OLD, alone_since), 30,
             "the previous release to take the cluster job over")
    assert stop_daemon(old) == 0
    ticks = sql_rows(url, "SELECT details->>'slot' AS slot, details->>'host' AS host, "
                          "timestamp FROM episodic_memory WHERE event_type = 'tick_ran'")
    per_slot = Counter(tick["slot"] for tick in ticks)
    assert set(per_slot.values()) == {1}, "a slot of the cluster job ran twice"
    runs = sql_rows(url, "SELECT scheduled_for, count(*) AS n FROM job_runs WHERE job_id = "
                         "'tick' GROUP BY scheduled_for HAVING count(*) > 1")
    assert runs == []
    together = Counter(t["host"] for t in ticks
                       if together_since < t["timestamp"] <= alone_since)
    assert sum(together.values()) >= TOGETHER_S / 2, together
    assert NEW in together, f"this release claims slots beside the previous one: {together}"
    for process in spawn.processes:
        assert error_lines(spawn.log_of(process)) == [], f"pid {process.pid} logged errors"
