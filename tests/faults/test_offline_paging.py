"""Paging through a database outage, with a real daemon on a private engine, PostgreSQL of
the test's own stopped and the Discord-like server: a container escalating while the
database is down is posted within a strike interval and 5 s of its restart; the daemon's
own "cannot reach its database" message goes out once after AEGIS_DB_OUTAGE_ALERT_AFTER.
The daemon is killed with -9 mid-outage and started again: neither is posted twice. Once
the database is back, nothing is posted again, the outage message is edited to resolved
and the container's recovery edits the message posted offline."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aegis.storage.dboutage import open_outage
from aegis.storage.spool import Spool
from tests.support.containers import BREAKS_FOR_GOOD, HEALTHCHECK
from tests.support.daemons import Spawner, daemon_running, kill_9, supervising_env
from tests.support.discord import FakeDiscord
from tests.support.engines import PrivateEngine
from tests.support.postgres import OwnPostgres
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

STRIKE_INTERVAL_S = 4
ALERT_AFTER_S = 10
ESCALATED = "sick escalated on test-host"
OUTAGE = "aegis on test-host cannot reach its database since "


def arrivals(fake: FakeDiscord) -> list[tuple[str, datetime]]:
    """The title of every post, and when it arrived (wall clock)."""
    now, monotonic = datetime.now(UTC), time.monotonic()
    return [(body["embeds"][0]["title"], now - timedelta(seconds=monotonic - at))
            for body, at in zip(fake.received, fake.received_at, strict=True)]


def posted(fake: FakeDiscord, prefix: str) -> bool:
    return any(title.startswith(prefix) for title, _ in arrivals(fake))


def edit_titled(fake: FakeDiscord, prefix: str) -> str | None:
    """The id of the message an accepted edit gave a title starting with ``prefix``."""
    return next((mid for mid, body in fake.edits
                 if body["embeds"][0]["title"].startswith(prefix)), None)


def spooled_restart(spool: Path) -> datetime:
    """When the restart of the incident, spooled, was recorded."""
    records: list[dict[str, Any]] = [json.loads(line) for line in spool.read_text().splitlines()]
    for record in records:
        if record.get("event_type") == "container_restarted":
            return datetime.fromisoformat(record["timestamp"])
    held = [record.get("event_type") or record.get("kind") for record in records]
    raise AssertionError(f"no restart in the spool, which holds {held}")


def outage_sent(spool: Path) -> bool:
    """Whether the daemon recorded its outage message as sent. A kill between the post and
    that record would post it again: paging is at least once, as nothing can be recorded
    at the instant the channel takes a message."""
    outage = open_outage(Spool(spool), "test-host")
    return outage is not None and outage.sent is not None


def test_an_escalation_and_the_outage_are_paged_once_through_a_kill(
        own_postgres: OwnPostgres, engine: PrivateEngine, aegis_home: Path, spawn: Spawner,
        fake: FakeDiscord) -> None:
    url = own_postgres.url
    sick = engine.run(BREAKS_FOR_GOOD, name="sick", healthcheck=HEALTHCHECK)
    env = supervising_env(
        {"AEGIS_DATABASE_URL": url, "AEGIS_HOME": str(aegis_home),
         "AEGIS_JOURNAL_DIR": str(aegis_home.parent / "journal"), "AEGIS_HOST": "test-host",
         "AEGIS_HTTP_ADDR": "off"},
        DOCKER_HOST=engine.url, AEGIS_STRIKE_INTERVAL=f"{STRIKE_INTERVAL_S}s",
        AEGIS_RESTART_BACKOFF="0s", AEGIS_STABLE_PERIOD="3s",
        AEGIS_DB_OUTAGE_ALERT_AFTER=f"{ALERT_AFTER_S}s", DISCORD_WEBHOOK_URL=fake.webhook_url(),
        AEGIS_LOG_FORMAT="json", AEGIS_LOG_LEVEL="info")
    spool = aegis_home / "spool.jsonl"
    first = spawn(env)
    wait_for(daemon_running(url), what="the daemon")
    wait_for(lambda: rows(url, "SELECT 1 FROM containers WHERE name = 'sick' AND "
                               "health = 'healthy'"), what="the container supervised")

    own_postgres.stop()
    sick.exec_run(["rm", "-f", "/healthy"])  # the whole incident happens offline
    wait_for(lambda: posted(fake, ESCALATED), timeout_s=90, what="the escalation, posted")
    escalated_at = dict(arrivals(fake))[ESCALATED]
    assert escalated_at - spooled_restart(spool) <= timedelta(seconds=STRIKE_INTERVAL_S + 5)
    wait_for(lambda: posted(fake, OUTAGE), timeout_s=60, what="the outage message")
    wait_for(lambda: outage_sent(spool), what="the outage message recorded as sent")

    kill_9(first)  # mid-outage, both messages out
    second = spawn(env)
    wait_for(lambda: spawn.logged(second, "database_unreachable"), timeout_s=30,
             what="the restarted daemon finding the outage under way")
    assert spawn.logged(second, "database_unreachable")[0]["message_sent"] is True
    time.sleep(ALERT_AFTER_S + 2)  # past the delay again: the restarted daemon posts nothing
    assert Counter(title.split(" since ")[0] for title, _ in arrivals(fake)) == {
        ESCALATED: 1, OUTAGE.removesuffix(" since "): 1}

    own_postgres.start()
    wait_for(lambda: spool.stat().st_size == 0, timeout_s=60, what="the spool replayed")
    wait_for(lambda: edit_titled(fake, "aegis on test-host reaches its database again"),
             timeout_s=60, what="the outage message resolved")
    sick.exec_run(["touch", "/healthy"])
    wait_for(lambda: edit_titled(fake, "sick recovered on test-host"), timeout_s=60,
             what="the recovery, edited into the message posted offline")

    assert len(fake.received) == 2, "a message was posted twice"
    recovered = edit_titled(fake, "sick recovered on test-host")
    resolved = edit_titled(fake, "aegis on test-host reaches its database again")
    # two posts, two messages: each edited by its own resolution
    assert recovered is not None
    assert resolved is not None
    assert recovered != resolved
    assert {recovered, resolved} == set(fake.messages)
    outbox = rows(url, "SELECT dedup_key, status, state FROM outbox ORDER BY id")
    assert {r["status"] for r in outbox} == {"delivered"}
    assert Counter(r["dedup_key"].split(":")[0] for r in outbox) == {
        "escalation": 1, "recovery": 1, "database_outage": 2}
    assert rows(url, "SELECT count(*) AS n FROM episodic_memory WHERE event_type = "
                     "'database_outage'") == [{"n": 1}]
    assert rows(url, "SELECT count(*) AS n FROM episodic_memory WHERE event_type = "
                     "'container_escalated'") == [{"n": 1}]
    assert fake.rejected == []
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
