"""The Docker engine stopped for longer than a strike interval under a real ``aegis run``:
one Discord message says it is unreachable, posted once though the daemon is killed with
-9 and started again during the outage, and edited to resolved when the engine is started
again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.daemons import Spawner, daemon_running, kill_9, supervising_env
from tests.support.discord import FakeDiscord
from tests.support.engines import PrivateEngine
from tests.support.rows import event_counts
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

STRIKE_INTERVAL_S = 3


def sweeps(url: str, available: bool) -> list[dict[str, Any]]:
    """The finished sweeps that found the engine ``available`` (or not)."""
    return [run for run in rows(url, "SELECT result FROM job_runs WHERE job_id = "
                                     "'docker_health_check' AND status = 'ok'")
            if run["result"]["docker_available"] is available]


def posted_titles(fake: FakeDiscord) -> list[str]:
    return [body["embeds"][0]["title"] for body in fake.received]


def test_an_engine_down_for_longer_than_a_strike_interval_is_one_message_then_resolved(
        engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner,
        fake: FakeDiscord) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    env = supervising_env(aegis_env, DOCKER_HOST=engine.url,
                          AEGIS_STRIKE_INTERVAL=f"{STRIKE_INTERVAL_S}s",
                          DISCORD_WEBHOOK_URL=fake.webhook_url(), AEGIS_LOG_LEVEL="info")
    first = spawn(env)
    wait_for(daemon_running(url), what="the daemon")
    wait_for(lambda: sweeps(url, True), what="a sweep with the engine")

    engine.stop()
    wait_for(lambda: fake.received, timeout_s=30, what="the engine's outage posted")
    assert posted_titles(fake)[0].startswith("Docker engine on test-host unreachable since ")
    wait_for(lambda: not rows(url, "SELECT id FROM outbox WHERE status = 'pending'"),
             what="the post recorded")
    kill_9(first)  # during the outage: the next daemon knows it was said
    spawn(env)
    wait_for(daemon_running(url), what="the second daemon")
    seen = len(sweeps(url, False))
    wait_for(lambda: len(sweeps(url, False)) >= seen + 2, timeout_s=30,
             what="the second daemon's sweeps without the engine")
    assert len(fake.received) == 1

    engine.start()
    wait_for(lambda: fake.edits, timeout_s=30, what="the message edited to resolved")

    assert posted_titles(fake) == [posted_titles(fake)[0]], "posted again"
    message_id = next(iter(fake.messages))
    assert [edited for edited, _ in fake.edits] == [message_id]
    resolved = fake.messages[message_id]["embeds"][0]
    assert resolved["title"] == "Docker engine on test-host answers again"
    assert resolved["description"].startswith("**Resolved** after ")
    counts = event_counts(url)
    assert counts["docker_outage"] == 1
    assert counts["docker_unavailable"] == counts["docker_available"] == 1
    assert fake.rejected == []
