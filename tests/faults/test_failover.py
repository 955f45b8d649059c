"""A failover under two running daemons: a primary and its synchronous standby (the test's
own, tests/support/replication.py), the daemons given both in one URL; the primary is
killed (``pg_ctl stop -m immediate``) and the standby promoted while, on a private
Docker engine, two containers break. The daemons write again on the promoted standby,
their listeners follow it, each container is restarted once and the one that stays
broken escalated once; and nothing the old primary had committed is missing on the new
one (read from the old primary's own files, started again alone afterwards)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.containers import BREAKS_FOR_GOOD, HEALS, HEALTHCHECK
from tests.support.daemons import Spawner, daemon_env
from tests.support.discord import FakeDiscord
from tests.support.engines import PrivateEngine, RestartWatch
from tests.support.replication import Replicated
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SUPERVISOR = "test-host"  # supervises the engine's containers and runs the test jobs
WORKER = "test-host-b"  # runs the test jobs alone
WRITE_AGAIN_WITHIN_S = 30
# what a row is, whatever its id: what the old primary committed is looked up by these
COMMITTED = {
    "events": "SELECT uid::text AS key FROM episodic_memory",
    "runs": "SELECT job_id || '/' || scope_key || '/' || scheduled_for::text AS key, "
            "status FROM job_runs",
    "outbox": "SELECT dedup_key AS key FROM outbox",
}


def failover_env(pair: Replicated, fake: FakeDiscord, engine: PrivateEngine, home: Path,
                 host: str, **extra: str) -> dict[str, str]:
    """A daemon on both servers, on the private engine, posting to the Discord-like
    server (whichever daemon's sender takes an alert posts it)."""
    home.mkdir()
    return daemon_env({"AEGIS_DATABASE_URL": pair.url, "AEGIS_HOME": str(home),
                       "AEGIS_JOURNAL_DIR": str(home / "journal"), "AEGIS_HOST": host,
                       "AEGIS_LOG_FORMAT": "json", "AEGIS_HTTP_ADDR": "off",
                       "DOCKER_HOST": engine.url, "DISCORD_WEBHOOK_URL": fake.webhook_url()},
                      AEGIS_LOG_LEVEL="info", **extra)


def written_since(url: str, host: str, since: Any) -> bool:
    return bool(rows(url, "SELECT 1 FROM daemons WHERE host = %s AND last_heartbeat_at > %s",
                     host, since))


def listeners_on(url: str) -> set[str]:
    return {str(row["application_name"]) for row in rows(
        url, "SELECT application_name FROM pg_stat_activity WHERE application_name "
             "LIKE 'aegis:%%:listen'")}


def committed(url: str) -> dict[str, dict[str, Any]]:
    """Each kind of row, by its key: the run's status for runs, else None."""
    return {kind: {row["key"]: row.get("status") for row in rows(url, query)}
            for kind, query in COMMITTED.items()}


def escalation_posts(fake: FakeDiscord) -> list[str]:
    return [body["embeds"][0]["title"] for body in fake.received
            if "escalated" in body["embeds"][0]["title"]]


def test_daemons_follow_a_promoted_standby_and_lose_nothing_committed(
        sync_pair: Replicated, engine: PrivateEngine, spawn: Spawner, fake: FakeDiscord,
        tmp_path: Path) -> None:
    pair = sync_pair
    labels = {"aegis.enable": "true"}
    sick = engine.run(BREAKS_FOR_GOOD, name="sick", healthcheck=HEALTHCHECK, labels=labels)
    flaky = engine.run(HEALS, name="flaky", healthcheck=HEALTHCHECK, labels=labels)
    client = engine.client()
    watch = RestartWatch(client)
    daemons = [
        spawn(failover_env(pair, fake, engine, tmp_path / "a", SUPERVISOR, AEGIS_REMEDIATION="on",
                     AEGIS_DOCKER_SCOPE="labeled", AEGIS_STRIKE_INTERVAL="4s",
                     AEGIS_STABLE_PERIOD="3s", AEGIS_RESTART_BACKOFF="0s")),
        spawn(failover_env(pair, fake, engine, tmp_path / "b", WORKER)),
    ]
    old = pair.primary.url()
    wait_for(lambda: all(written_since(old, host, "-infinity") for host in (SUPERVISOR, WORKER)),
             what="both daemons heartbeating")
    wait_for(lambda: len(rows(old, "SELECT 1 FROM job_runs WHERE status = 'ok' GROUP BY host "
                                   "HAVING count(*) > 2")) == 2 and len(listeners_on(old)) == 2,
             what="jobs run and both listeners")
    wait_for(lambda: len(rows(old, "SELECT 1 FROM containers WHERE health = 'healthy'")) == 2,
             what="the containers supervised")

    for container in (sick, flaky):  # they break as the primary goes
        container.exec_run(["rm", "-f", "/healthy"])
    switch_at = rows(old, "SELECT now() AS now")[0]["now"]
    died_at = pair.fail_over()
    new = pair.standby.url()

    for host in (SUPERVISOR, WORKER):  # within 30 s of the primary's death
        wait_for(lambda host=host: written_since(new, host, switch_at),  # type: ignore[misc]
                 timeout_s=WRITE_AGAIN_WITHIN_S - (time.monotonic() - died_at),
                 what=f"{host} writing on the new primary")
    listeners = {f"aegis:{host}:listen" for host in (SUPERVISOR, WORKER)}
    wait_for(lambda: listeners_on(new) == listeners, what="both listeners on the new primary")
    wait_for(lambda: escalation_posts(fake), timeout_s=60, what="sick escalated")
    wait_for(lambda: rows(new, "SELECT 1 FROM episodic_memory WHERE event_type = "
                               "'container_recovered' AND details->>'container' = 'flaky'"),
             timeout_s=60, what="flaky healed by its restart")
    time.sleep(6)  # more strike intervals: nothing repeats
    for daemon in daemons:
        daemon.send_signal(signal.SIGTERM)
    assert [daemon.wait(30) for daemon in daemons] == [0, 0]

    assert watch.stop() == {"sick": 1, "flaky": 1}, "each restarted once"
    assert escalation_posts(fake) == ["sick escalated on test-host"]
    escalated = Counter(str(r["container"]) for r in rows(
        new, "SELECT details->>'container' AS container FROM episodic_memory "
             "WHERE event_type = 'container_escalated'"))
    assert escalated == {"sick": 1}
    assert rows(new, "SELECT count(*) AS n FROM outbox WHERE dedup_key LIKE "
                     "'escalation:%%sick%%'") == [{"n": 1}]
    client.close()

    before = committed(pair.old_primary_alone().url())
    after = committed(new)
    for kind, keys in before.items():
        missing = set(keys) - set(after[kind])
        assert not missing, f"{kind} committed on the old primary, missing: {sorted(missing)}"
    finished = {key: status for key, status in before["runs"].items() if status != "running"}
    assert {key: after["runs"][key] for key in finished} == finished
