"""Healing what a restart cannot, on the real engine: a dependant of a replaced network
parent recreated into the new parent's namespace (live, and at a daemon's start), the
healing ladder's recreate and stack restart, and a failed recreate rolled back."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from docker.types import Mount

from aegis import api
from aegis.core.clock import utcnow
from aegis.supervision.docker import docker_time
from aegis.supervision.recreate import RecreateError, recreate
from aegis.supervision.supervisor import SupervisionState, Supervisor
from tests.support.compose import compose_command
from tests.support.containers import (
    BREAKS_FOR_GOOD,
    HEALS,
    IDLE,
    Containers,
    make_unhealthy,
    wait_health,
)
from tests.support.rows import count, events_of, types_of
from tests.support.supervision import running_watcher
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]

# Writes a token into its anonymous volume at its first start only: the token read back
# after a recreate proves the volume came along.
KEEPS_DATA = f"[ -f /data/token ] || cat /proc/sys/kernel/random/uuid > /data/token; {IDLE}"
ON = {"aegis.enable": "true"}


@pytest.fixture
def dangling(docker_client: Any) -> Callable[[], set[str]]:
    """The dangling volumes that were not dangling when the test began."""
    before = {v.name for v in docker_client.volumes.list(filters={"dangling": True})}
    return lambda: {v.name for v in docker_client.volumes.list(
        filters={"dangling": True})} - before


def remove_with_volumes(docker_client: Any, *names: str) -> None:
    """Remove containers and their volumes (a carried anonymous volume is mounted by name
    in its new container, so ``rm -v`` alone would keep it)."""
    for name in names:
        with contextlib.suppress(docker.errors.NotFound):
            mounts = docker_client.api.inspect_container(name)["Mounts"]
            docker_client.api.remove_container(name, v=True, force=True)
            for mount in mounts:
                if mount["Type"] == "volume":
                    with contextlib.suppress(docker.errors.NotFound):
                        docker_client.api.remove_volume(mount["Name"])


def attrs_of(docker_client: Any, name: str) -> dict[str, Any]:
    return docker_client.api.inspect_container(name)  # type: ignore[no-any-return]


def family(make_container: Callable[..., Any]) -> tuple[Any, Any]:
    """A parent on the bridge and a dependant in its network namespace that keeps data in
    an anonymous volume."""
    parent = make_container(IDLE, healthcheck=None, labels=ON, network_mode="bridge")
    dependant = make_container(
        KEEPS_DATA, healthcheck=None, network_mode=f"container:{parent.id}",
        labels={**ON, "role": "client"}, environment={"TUNNEL": "wg0"},
        mounts=[Mount("/data", None, type="volume")])
    return parent, dependant


def replace_parent(docker_client: Any, make_container: Callable[..., Any], parent: Any) -> Any:
    """``docker rm -f`` the parent and run a new one under its name."""
    docker_client.api.remove_container(parent.id, force=True)
    return make_container(IDLE, healthcheck=None, labels=ON, network_mode="bridge",
                          name=parent.name)


def joined(docker_client: Any, name: str, parent_id: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            attrs = attrs_of(docker_client, name)
        except docker.errors.NotFound:  # mid-recreate: the old one aside, the new not made
            return False
        return bool(attrs["HostConfig"]["NetworkMode"] == f"container:{parent_id}"
                    and attrs["State"]["Running"])
    return check


def token(docker_client: Any, name: str) -> bytes:
    return bytes(docker_client.containers.get(name).exec_run(["cat", "/data/token"]).output)


def test_a_dependant_of_a_replaced_parent_is_recreated_into_the_new_one_keeping_its_data(
        fast_app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str, dangling: Callable[[], set[str]]) -> None:
    parent, dependant = family(make_container)
    wait_for(lambda: token(docker_client, dependant.name).strip() != b"", 10)
    kept = token(docker_client, dependant.name)
    try:
        with running_watcher(fast_app):
            new_parent = replace_parent(docker_client, make_container, parent)
            wait_for(joined(docker_client, dependant.name, new_parent.id), 30,
                     what="the dependant joined to the new parent")
            wait_for(lambda: count(database_url, "container_recreated", dependant.name), 10)
        attrs = attrs_of(docker_client, dependant.name)
        assert attrs["Id"] != dependant.id  # a new container, under the same name
        assert attrs["Config"]["Labels"]["role"] == "client"
        assert "TUNNEL=wg0" in attrs["Config"]["Env"]
        assert token(docker_client, dependant.name) == kept  # its anonymous volume came along
        found = types_of(database_url, dependant.name)
        assert found.count("container_recreated") == 1
        assert "container_escalated" not in found
        assert "container_unhealthy" not in found
        recreated = next(e for e in events_of(database_url, dependant.name)
                         if e["event_type"] == "container_recreated")
        assert recreated["details"]["network_of"] == parent.name
        assert recreated["details"]["old_parent_id"] == parent.id[:12]
        assert dangling() == set()  # the old container's volume is the new one's
        assert not [c for c in docker_client.containers.list(all=True)
                    if "aegis-replaced" in c.name]
    finally:
        remove_with_volumes(docker_client, dependant.name)


def test_a_compose_vpn_sidecar_follows_its_replaced_vpn_and_compose_still_knows_it(
        fast_app: api.Aegis, docker_client: Any, busybox_image: str, tmp_path: Path,
        database_url: str) -> None:
    """The recipe of docs/remediation.md with the compose tool of this machine: `client`
    in `network_mode: service:vpn`; `vpn` replaced by compose alone (--no-deps)."""
    project = f"aegis-test-{uuid.uuid4().hex[:8]}"
    (tmp_path / "compose.yaml").write_text(json.dumps({"version": "2.4", "services": {
        "vpn": {"image": busybox_image, "command": ["/bin/sh", "-c", IDLE],
                "labels": {**ON, "aegis.test": project}},
        "client": {"image": busybox_image, "command": ["/bin/sh", "-c", KEEPS_DATA],
                   "network_mode": "service:vpn", "depends_on": ["vpn"],
                   "volumes": ["/data"], "labels": {**ON, "aegis.test": project}}}}))

    def compose(*args: str) -> str:
        return subprocess.run([*compose_command(), "--project-name", project,
                               "--project-directory", str(tmp_path), "-f",
                               str(tmp_path / "compose.yaml"), *args],
                              capture_output=True, text=True, check=True, timeout=120).stdout

    compose("up", "-d")
    try:
        client = f"{project}_client_1" if compose_command() == ["docker-compose"] else \
            f"{project}-client-1"
        wait_for(lambda: token(docker_client, client).strip() != b"", 10)
        kept = token(docker_client, client)
        with running_watcher(fast_app):
            compose("up", "-d", "--no-deps", "--force-recreate", "vpn")
            vpn = compose("ps", "-q", "vpn").strip()
            wait_for(joined(docker_client, client, vpn), 30,
                     what="the client joined to the new vpn")
        found = docker_client.containers.get(client).exec_run(["cat", "/data/token"])
        assert found.output == kept, (
            f"exit {found.exit_code}, output {found.output!r}; mounts "
            f"{attrs_of(docker_client, client)['Mounts']}; aegis recorded "
            f"{[(e['event_type'], e['summary']) for e in events_of(database_url, client)]}")
        assert compose("ps", "-q", "client").strip() == attrs_of(docker_client, client)["Id"]
        assert count(database_url, "container_recreated", client) == 1
    finally:
        carried = [m["Name"] for m in attrs_of(docker_client, client)["Mounts"]]
        compose("down", "-v", "--remove-orphans")
        for volume in carried:  # mounted by name since the recreate: `down -v` keeps it
            docker_client.api.remove_volume(volume)


def test_a_dependant_left_behind_while_aegis_was_stopped_is_recreated_at_its_start(
        fast_app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    parent, dependant = family(make_container)
    Supervisor(fast_app, docker_client, own_ids=frozenset()).reconcile(utcnow())  # learns
    new_parent = replace_parent(docker_client, make_container, parent)  # aegis not running
    try:
        # a daemon starting afresh: nothing in memory, what it learnt is in the database
        fresh = Supervisor(fast_app, docker_client, own_ids=frozenset(),
                           state=SupervisionState())
        fresh.reconcile(utcnow(), wait=True)
        assert joined(docker_client, dependant.name, new_parent.id)()
        assert count(database_url, "container_recreated", dependant.name) == 1
    finally:
        remove_with_volumes(docker_client, dependant.name)


def test_a_dependant_aegis_may_not_recreate_is_said_once_across_sweeps(
        fast_app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    parent = make_container(IDLE, healthcheck=None, labels=ON, network_mode="bridge")
    opted_out = make_container(IDLE, healthcheck=None, labels={"aegis.enable": "false"},
                               network_mode=f"container:{parent.id}")
    state = SupervisionState()
    Supervisor(fast_app, docker_client, own_ids=frozenset(), state=state).reconcile(utcnow())
    replace_parent(docker_client, make_container, parent)
    for _ in range(2):  # each sweep has a supervisor of its own, as the sweep job's
        Supervisor(fast_app, docker_client, own_ids=frozenset(), state=state).reconcile(
            utcnow(), wait=True)
    assert count(database_url, "container_dependent_skipped", opted_out.name) == 1
    assert attrs_of(docker_client, opted_out.name)["Id"] == opted_out.id  # left alone


def test_the_ladder_recreates_a_container_a_restart_did_not_heal(
        fast_app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    """Its probe checks a file only a fresh container makes: a restart keeps the broken
    writable layer, a recreate starts from the image again."""
    broken = make_container(BREAKS_FOR_GOOD, labels={
        **ON, "aegis.heal": "recreate", "aegis.heal.recreate-after": "1"})
    with running_watcher(fast_app):
        make_unhealthy(docker_client, broken)
        wait_for(lambda: count(database_url, "container_recovered", broken.name), 60,
                 what="healthy again after the recreate")
    found = types_of(database_url, broken.name)
    assert found.count("container_restarted") == 1
    assert found.count("container_recreated") == 1
    recreated = next(e for e in events_of(database_url, broken.name)
                     if e["event_type"] == "container_recreated")
    assert "log_tail" in recreated["details"]  # read before the old container went
    assert found.index("container_restarted") < found.index("container_recreated")
    assert "container_escalated" not in found
    assert attrs_of(docker_client, broken.name)["Id"] != broken.id
    wait_health(docker_client, docker_client.containers.get(broken.name), "healthy")


def test_a_dependant_follows_its_parent_when_the_ladder_recreates_the_parent(
        fast_app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    parent = make_container(BREAKS_FOR_GOOD, network_mode="bridge",
                            labels={**ON, "aegis.heal": "recreate"})
    dependant = make_container(IDLE, healthcheck=None, labels=ON,
                               network_mode=f"container:{parent.id}")
    with running_watcher(fast_app):
        make_unhealthy(docker_client, parent)
        wait_for(lambda: count(database_url, "container_recovered", parent.name), 60,
                 what="the parent healthy again after its recreate")
        new_parent = attrs_of(docker_client, parent.name)["Id"]
        assert new_parent != parent.id
        wait_for(joined(docker_client, dependant.name, new_parent), 30,
                 what="the dependant joined to the recreated parent")
    assert count(database_url, "container_recreated", dependant.name) == 1


def test_a_recreate_the_ladder_cannot_make_is_rolled_back_and_escalated(
        fast_app: api.Aegis, docker_client: Any, busybox_image: str,
        database_url: str) -> None:
    tag = f"aegis-test-gone:{uuid.uuid4().hex[:8]}"
    docker_client.images.get(busybox_image).tag(tag)
    tagged = Containers(docker_client, tag)
    try:
        broken = tagged.run(BREAKS_FOR_GOOD, labels={**ON, "aegis.heal": "recreate"})
        wait_health(docker_client, broken, "healthy")
        docker_client.images.remove(tag)  # the image reference it was created with is gone
        with running_watcher(fast_app):
            make_unhealthy(docker_client, broken)
            wait_for(lambda: count(database_url, "container_escalated", broken.name), 60,
                     what="escalated after the failed recreate")
        found = types_of(database_url, broken.name)
        assert found == ["container_unhealthy", "container_restarted",
                         "container_recreate_failed", "container_escalated"]
        failed = events_of(database_url, broken.name)[2]["details"]
        assert failed["step"] == "create"
        assert failed["rolled_back"].endswith("again and running")
        attrs = attrs_of(docker_client, broken.name)
        assert attrs["Id"] == broken.id  # the old container, back under its name
        assert attrs["State"]["Running"]
    finally:
        tagged.remove_all()


def test_the_ladder_restarts_a_compose_stack_in_depends_on_order(
        fast_app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    project = f"aegis-test-{uuid.uuid4().hex[:8]}"

    def service(name: str, script: str, *depends: str, **labels: str) -> Any:
        return make_container(script, name=f"{project}-{name}-1", labels={
            **ON, "com.docker.compose.project": project, "com.docker.compose.service": name,
            "com.docker.compose.depends_on": ",".join(f"{d}:service_started:false"
                                                      for d in depends), **labels})

    web = service("web", BREAKS_FOR_GOOD, "app", **{"aegis.heal": "stack"})
    app = service("app", HEALS, "db")
    db = service("db", HEALS)
    before = {c.name: attrs_of(docker_client, c.name)["State"]["StartedAt"]
              for c in (db, app, web)}
    with running_watcher(fast_app):
        make_unhealthy(docker_client, web)
        wait_for(lambda: count(database_url, "container_stack_restarted", web.name), 60,
                 what="the stack restarted")
    started = {c.name: docker_time(attrs_of(docker_client, c.name)["State"]["StartedAt"])
               for c in (db, app, web)}
    assert all(attrs_of(docker_client, name)["State"]["StartedAt"] != before[name]
               for name in before)
    assert started[db.name] < started[app.name] < started[web.name]  # type: ignore[operator]
    restarted = next(e for e in events_of(database_url, web.name)
                     if e["event_type"] == "container_stack_restarted")
    assert restarted["details"]["order"] == [db.name, app.name, web.name]


def test_a_recreate_that_fails_rolls_back_to_the_old_container(
        docker_client: Any, busybox_image: str) -> None:
    tag = f"aegis-test-gone:{uuid.uuid4().hex[:8]}"
    docker_client.images.get(busybox_image).tag(tag)
    tagged = Containers(docker_client, tag)
    try:
        running = tagged.run(IDLE, healthcheck=None)
        docker_client.images.remove(tag)  # untagged: the name can no longer be created
        with pytest.raises(RecreateError) as failed:
            recreate(docker_client, running.name, stop_timeout_s=1)
        assert failed.value.step == "create"
        assert "No such image" in failed.value.error
        attrs = attrs_of(docker_client, running.name)
        assert attrs["Id"] == running.id
        assert attrs["State"]["Running"]
        assert "is " + running.name + " again and running" in failed.value.rolled_back
    finally:
        tagged.remove_all()
