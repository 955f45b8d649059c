"""Quiet dependants, on the real engine with a real ``aegis run`` and the local
Discord-like server: a parent and two containers that depend on it (one in its network
namespace, one by compose ``depends_on``) fail together; the dependants are folded into
the parent's incident and named in its message, and only the parent alerts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from docker.types import Mount

from tests.support.containers import FAST_PROBE, IDLE, wait_health
from tests.support.daemons import Spawner, run_daemon
from tests.support.discord import FakeDiscord
from tests.support.rows import events_of, sql_rows, types_of
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]

UP = {**FAST_PROBE, "test": ["CMD-SHELL", "test -f /shared/up"]}


@pytest.fixture
def family(make_container: Callable[..., Any], tmp_path: Path
           ) -> tuple[Path, Any, Any, Any]:
    """A parent and two dependants, all healthy while ``shared/up`` exists: (that file,
    parent, the one in its network namespace, the one that depends_on it)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "up").touch()
    project = f"aegis-test-{uuid.uuid4().hex[:8]}"

    def run(service: str, **kwargs: Any) -> Any:
        labels = {"aegis.enable": "true", "com.docker.compose.project": project,
                  "com.docker.compose.service": service, **kwargs.pop("labels", {})}
        return make_container(IDLE, name=f"{project}-{service}", labels=labels,
                              healthcheck=UP,
                              mounts=[Mount("/shared", str(shared), type="bind")], **kwargs)

    parent = run("vpn")
    in_its_network = run("client", network_mode=f"container:{parent.id}")
    depending = run("downloader",
                    labels={"com.docker.compose.depends_on": "vpn:service_healthy:false"})
    return shared / "up", parent, in_its_network, depending


def recovered(url: str, name: str) -> Callable[[], bool]:
    return lambda: "container_recovered" in types_of(url, name)


@pytest.mark.parametrize("style", ["thread", "posts"])
# pytest hands each fixture in as an argument
def test_a_parent_and_two_dependants_failing_together_alert_once(  # noqa: PLR0913
        aegis_env: dict[str, str], spawn: Spawner, fake: FakeDiscord, docker_client: Any,
        family: tuple[Path, Any, Any, Any], style: str) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    up, parent, client, downloader = family
    for container in (parent, client, downloader):
        wait_health(docker_client, container, "healthy", 30)
    run_daemon(spawn, aegis_env, DISCORD_WEBHOOK_URL=fake.webhook_url(),
               AEGIS_ALERT_STYLE=style)
    up.unlink()  # the three fail together
    wait_for(lambda: "container_escalated" in types_of(url, parent.name), timeout_s=60,
             what="the parent escalated")
    wait_for(lambda: fake.received, what="its alert")
    up.touch()  # the parent heals, and the dependants with it
    for container in (parent, client, downloader):
        wait_for(recovered(url, container.name), timeout_s=60,
                 what=f"{container.name} recovered")
    wait_for(lambda: not sql_rows(url, "SELECT 1 FROM outbox WHERE status = 'pending'"),
             what="every alert delivered")

    for dependant in (client, downloader):
        found = types_of(url, dependant.name)
        assert "container_escalated" not in found
        folded = [e for e in events_of(url, dependant.name)
                  if e["details"].get("folded_into") == parent.name]
        assert folded, found  # struck or folded into the parent's incident, and said so
    alerts = sql_rows(url, "SELECT dedup_key FROM outbox ORDER BY id")
    assert [a["dedup_key"] for a in alerts if a["dedup_key"].startswith("escalation:")] == [
        f"escalation:test-host:{parent.name}:1"]
    affected = sql_rows(url, "SELECT affected FROM containers WHERE name = %s",
                        parent.name)[0]["affected"]
    assert sorted(affected) == sorted([client.name, downloader.name])
    if style == "thread":
        assert len(fake.received) == 1  # one message, edited as the incident moved
        final = fake.messages[next(iter(fake.messages))]["embeds"][0]
        assert final["title"] == f"{parent.name} recovered on test-host"
        assert final["description"].startswith("**Resolved** after ")
        also = next(line for line in final["description"].splitlines()
                    if line.startswith("Also affected: "))
        assert {client.name, downloader.name} <= set(
            also.removeprefix("Also affected: ").split(" (")[0].replace("\\", "").split(", "))
    else:
        assert [p["embeds"][0]["title"] for p in fake.received] == [
            f"{parent.name} escalated on test-host", f"{parent.name} recovered on test-host"]
    assert fake.rejected == []
