"""The healing ladder as pure functions: the labels, the protocol's rungs (a table of
datetimes, no Docker), the compose stack's order, and what a recreate creates from an
inspect."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from aegis.supervision.docker import Sighting
from aegis.supervision.ladder import dependency_order
from aegis.supervision.protocol.labels import parse_labels
from aegis.supervision.protocol.strikes import HealMode, Observed
from aegis.supervision.recreate import aside_of, creation, is_aside
from aegis.supervision.restarter import RestartTracker
from tests.support.protocol import POLICY, run

UNHEALTHY = Observed("running", "unhealthy", inspected=True)
HEALTHY = Observed("running", "healthy", inspected=True)
RECREATE = replace(POLICY, heal=HealMode.RECREATE)


def test_the_heal_labels_parse_and_bad_values_are_reported() -> None:
    parsed = parse_labels({"aegis.heal": "Recreate", "aegis.heal.recreate-after": "2"})
    assert (parsed.heal, parsed.recreate_after, parsed.problems) == (HealMode.RECREATE, 2, ())
    bad = parse_labels({"aegis.heal": "redeploy", "aegis.heal.recreate-after": "0"})
    assert (bad.heal, bad.recreate_after) == (None, None)
    assert bad.problems == ("aegis.heal='redeploy' is not restart, recreate or stack",
                            "aegis.heal.recreate-after='0' is not a whole number from 1 to 100")


def test_by_default_a_restart_that_did_not_help_escalates() -> None:
    decisions = run([(0, UNHEALTHY), (60, UNHEALTHY), (120, UNHEALTHY)])
    assert [d.action for d in decisions] == ["strike1", "restart", "escalate"]


def test_recreate_comes_after_a_restart_that_did_not_help_then_the_escalation() -> None:
    decisions = run([(0, UNHEALTHY), (60, UNHEALTHY), (120, UNHEALTHY), (180, UNHEALTHY)],
                    policy=RECREATE)
    assert [d.action for d in decisions] == ["strike1", "restart", "recreate", "escalate"]
    assert decisions[2].reason == ("still unhealthy after 1 restart this hour: recreated "
                                   "from its image (a fresh writable layer)")
    assert len(decisions[2].state.restarts) == 2  # a recreate counts against the budget
    assert decisions[3].reason == "still unhealthy one strike interval after it was recreated"


def test_recreate_after_n_restarts_and_once_per_incident() -> None:
    policy = replace(RECREATE, recreate_after=2, backoff_s=0)
    steps = [(0, UNHEALTHY), (60, UNHEALTHY), (120, UNHEALTHY), (180, UNHEALTHY),
             (240, UNHEALTHY)]
    decisions = run(steps, policy=policy)
    assert [d.action for d in decisions] == ["strike1", "restart", "restart", "recreate",
                                             "escalate"]
    healed = run([(0, UNHEALTHY), (60, UNHEALTHY), (120, UNHEALTHY), (180, HEALTHY),
                  (400, HEALTHY)], policy=replace(RECREATE, backoff_s=0))
    assert healed[-1].action == "recover"
    assert healed[-1].state.climbed_at is None
    again = run([(4000, UNHEALTHY), (4060, UNHEALTHY), (4120, UNHEALTHY)],
                state=healed[-1].state, policy=replace(RECREATE, backoff_s=0))
    assert [d.action for d in again] == ["strike1", "restart", "recreate"]  # a new incident


def test_stack_is_the_rung_of_aegis_heal_stack_and_protected_ones_climb_nothing() -> None:
    stack = run([(0, UNHEALTHY), (60, UNHEALTHY), (120, UNHEALTHY)],
                policy=replace(POLICY, heal=HealMode.STACK))
    assert stack[-1].action == "restart_stack"
    protected = run([(0, UNHEALTHY), (60, UNHEALTHY)],
                    policy=replace(RECREATE, protected=True))
    assert [d.action for d in protected] == ["strike1", "escalate"]


def service(name: str, *depends: str, project: str = "shop") -> Sighting:
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": name,
              "com.docker.compose.depends_on": ",".join(f"{d}:service_healthy:false"
                                                        for d in depends)}
    return Sighting(id=name * 8, name=f"{project}-{name}-1", image="img", labels=labels,
                    status="running", health="healthy", has_healthcheck=True)


def test_a_stack_is_ordered_by_depends_on_and_a_cycle_does_not_hang() -> None:
    members = [service("web", "app", "cache"), service("app", "db"), service("db"),
               service("cache")]
    assert [m.compose_service for m in dependency_order(members)] == [
        "db", "app", "cache", "web"]
    loop = [service("a", "b"), service("b", "a")]
    assert sorted(m.compose_service or "" for m in dependency_order(loop)) == ["a", "b"]


OLD_ID = "db12cd34ef56" + "0" * 52  # begins with "db", a service's alias too


def inspect_of_web(**host: Any) -> dict[str, Any]:
    """An inspect as the engine answers it, of a compose service on a user network."""
    return {
        "Id": OLD_ID, "Name": "/shop-web-1",
        "Config": {"Hostname": OLD_ID[:12], "Image": "shop/web:1.4", "Env": ["A=1"],
                   "Cmd": ["serve"], "Labels": {"com.docker.compose.project": "shop"},
                   "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/cache": {}},
                   "Healthcheck": {"Test": ["CMD", "true"]}, "Entrypoint": None},
        "HostConfig": {"NetworkMode": "shop_default", "Binds": ["shop_data:/data"],
                       "RestartPolicy": {"Name": "unless-stopped"}, **host},
        "Mounts": [{"Type": "volume", "Name": "shop_data", "Destination": "/data",
                    "RW": True},
                   {"Type": "volume", "Name": "f00d" * 16, "Destination": "/cache",
                    "RW": True}],
        "NetworkSettings": {"Networks": {
            "shop_default": {"Aliases": ["web", "shop-web-1", OLD_ID[:12]]},
            "shop_back": {"Aliases": ["web", "db"],
                          "IPAMConfig": {"IPv4Address": "10.9.0.5"}}}},
    }


def test_a_recreate_carries_the_configuration_and_the_anonymous_volume_by_name() -> None:
    made = creation(inspect_of_web())
    assert made.name == "shop-web-1"
    assert "Hostname" not in made.config  # the old id: the engine gives the new one its own
    assert made.config["Image"] == "shop/web:1.4"
    assert made.config["Env"] == ["A=1"]
    assert "Entrypoint" not in made.config  # unset stays unset
    assert made.config["HostConfig"]["Binds"] == ["shop_data:/data", f"{'f00d' * 16}:/cache"]
    assert made.anonymous_volumes == ("f00d" * 16,)
    assert made.config["NetworkingConfig"] == {
        "EndpointsConfig": {"shop_default": {"Aliases": ["web", "shop-web-1"]}}}
    assert made.more_networks == {"shop_back": {
        "Aliases": ["web", "db"], "IPAMConfig": {"IPv4Address": "10.9.0.5"}}}


def test_a_recreate_into_another_network_namespace_drops_what_the_engine_refuses() -> None:
    made = creation(inspect_of_web(NetworkMode="container:" + "9" * 64), network_parent="7" * 64)
    assert made.config["HostConfig"]["NetworkMode"] == "container:" + "7" * 64
    assert "ExposedPorts" not in made.config
    assert "Hostname" not in made.config
    anonymous = creation(inspect_of_web(Mounts=[{"Type": "volume", "Target": "/cache"}]))
    assert anonymous.config["HostConfig"]["Mounts"] == [
        {"Type": "volume", "Target": "/cache", "Source": "f00d" * 16}]
    assert anonymous.anonymous_volumes == ("f00d" * 16,)


@pytest.mark.parametrize(("name", "was"), [
    ("web-aegis-replaced-ab12cd34ef56", "web"), ("web", None),
    ("web-aegis-replaced-short", None)])
def test_the_name_of_a_container_set_aside(name: str, was: str | None) -> None:
    assert aside_of(name) == was
    assert is_aside(name) == (was is not None)


def test_a_container_is_acted_on_by_one_thread_at_a_time() -> None:
    tracker = RestartTracker()
    assert tracker.claim("web-01", "torrent", "a" * 64)
    assert not tracker.claim("web-01", "torrent", "a" * 64)  # the other thread leaves it
    tracker.end("web-01", "torrent")
    assert tracker.claim("web-01", "torrent", "a" * 64)
