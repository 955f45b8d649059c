"""A storm on the real engine: twelve containers of one host turning unhealthy together,
supervised by a real ``aegis run`` that would post a message at each restart
(AEGIS_ALERT_FROM=restart), give one posted Discord message for the host, edited in place
as they are restarted and recover, and resolved at the end; each container is still
restarted, once, by itself."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.containers import HEALS, wait_health
from tests.support.daemons import Spawner, daemon_running, supervising_env
from tests.support.discord import FakeDiscord
from tests.support.rows import event_counts, events_of_type
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

CONTAINERS = 12


def test_twelve_containers_unhealthy_together_are_one_message_each_still_restarted(
        docker_client: Any, make_container: Callable[..., Any], spawn: Spawner,
        aegis_env: dict[str, str], fake: FakeDiscord) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    made = [make_container(HEALS, labels={"aegis.enable": "true"}) for _ in range(CONTAINERS)]
    for container in made:
        wait_health(docker_client, container, "healthy")
    spawn(supervising_env(aegis_env, AEGIS_DOCKER_SCOPE="labeled", AEGIS_STRIKE_INTERVAL="4s",
                          AEGIS_STABLE_PERIOD="3s", AEGIS_ALERT_FROM="restart",
                          AEGIS_LOG_LEVEL="info", DISCORD_WEBHOOK_URL=fake.webhook_url()))
    wait_for(daemon_running(url), what="the daemon")
    wait_for(lambda: len(rows(url, "SELECT name FROM containers WHERE health = 'healthy'"))
             == CONTAINERS, what="every container seen healthy")

    with ThreadPoolExecutor(CONTAINERS) as pool:  # together: the host's trouble
        list(pool.map(lambda c: c.exec_run(["rm", "-f", "/healthy"]), made))

    wait_for(lambda: event_counts(url)["storm_ended"], timeout_s=90,
             what="every container restarted and recovered: the storm over")
    wait_for(lambda: not rows(url, "SELECT id FROM outbox WHERE status = 'pending'"),
             what="every version of the message delivered")

    names = {container.name for container in made}
    restarted = [event["details"]["container"]
                 for event in events_of_type(url, "container_restarted")]
    assert sorted(restarted) == sorted(names), "each restarted once, by itself"
    assert len(fake.received) == 1, [body["embeds"][0]["title"] for body in fake.received]
    posted = fake.received[0]["embeds"][0]["title"]
    assert posted.startswith("test-host: ")
    assert " containers unhealthy since " in posted
    message_id = next(iter(fake.messages))
    # edited as they moved: a version still waiting when a newer one came went with it
    assert fake.edits
    assert {edited for edited, _ in fake.edits} == {message_id}
    final = fake.messages[message_id]["embeds"][0]
    assert final["title"].startswith("test-host: storm over after ")
    assert final["title"].endswith(f", {CONTAINERS} containers")
    assert final["description"].startswith("**Resolved** after ")
    assert f"Recovered ({CONTAINERS}): " in final["description"]
    counts = event_counts(url)
    assert (counts["storm_started"], counts["storm_ended"]) == (1, 1)
    assert counts["container_recovered"] == CONTAINERS
    assert rows(url, "SELECT count(*) AS n FROM outbox WHERE thread LIKE 'incident:%%'") == [
        {"n": 0}], "a container's own message while the storm lasted"
    assert fake.rejected == []
