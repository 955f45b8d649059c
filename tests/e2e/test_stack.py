"""The deployment of docs/deployment.md, run for real: the repository's compose.yaml and a
``.env`` made from ``.env.example``, ``up -d --build`` on this machine's engine, and a
user's own container with a failing health check beside the stack.

The stack's aegis is healed, escalates to a Discord-like endpoint running as a service on
the stack's network, survives a PostgreSQL restart in the middle of an incident, writes
its journal into its volume, stops within its grace, and keeps its history over
``down``/``up``; through the socket-proxy profile it does the same, and says clearly when
the proxy forbids restarts. Every step is named, so a failure says which part broke.
Needs the engine to itself (the stack's aegis acts on every container with a health check).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.containers import IDLE, Containers, started_at
from tests.support.stack import Stack
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

# A user's service whose health check always fails (IDLE: TERM ends it at once, so
# restarts are quick).
PROBE_FAILS = {"test": ["CMD", "/bin/sh", "-c", "echo 'not ready'; exit 1"],
               "interval": 1_000_000_000, "timeout": 2_000_000_000, "retries": 1}
INCIDENT = ["container_unhealthy", "container_restarted", "container_escalated"]
HEALTHY_TIMEOUT_S = 240  # the image's health check runs every 30 s
INCIDENT_TIMEOUT_S = 120
POLL_S = 1.0  # each look at the stack's database is a psql in its container
# Run inside the aegis container: the overview's status without and with the token, and
# whether it is the page it should be.
STATUS_PAGE = """
import sys, urllib.error, urllib.request
url = "http://127.0.0.1:9465/"
try:
    urllib.request.urlopen(url)
except urllib.error.HTTPError as exc:
    print(exc.code)
answer = urllib.request.urlopen(urllib.request.Request(
    url, headers={"Authorization": "Bearer " + sys.argv[1]}))
print(answer.status, "Open incidents" in answer.read().decode())
"""


def start_sibling(client: Any, stack: Stack, busybox: str, number: int) -> Any:
    """A container started outside the stack, as a user's own service would be."""
    container = Containers(client, busybox).run(
        IDLE, name=f"{stack.project}-sibling-{number}", healthcheck=PROBE_FAILS,
        labels={"aegis.test": stack.project})
    container.reload()  # attrs of the first start
    return container


def wait_healthy(client: Any, stack: Stack) -> str:
    container_id = stack.container_id("aegis")

    def healthy() -> bool:
        state = client.api.inspect_container(container_id)["State"]
        assert state["Status"] == "running", f"the aegis container is {state['Status']}"
        return bool((state.get("Health") or {}).get("Status") == "healthy")

    wait_for(healthy, HEALTHY_TIMEOUT_S, "the aegis container to turn healthy", POLL_S)
    return container_id


def no_failing_check(stack: Stack) -> dict[str, dict[str, str]]:
    checks = stack.doctor()
    failing = {name: check for name, check in checks.items() if check["status"] == "fail"}
    assert not failing, f"aegis doctor fails: {failing}"
    return checks


def incident_of(stack: Stack, container: str) -> list[str]:
    return [e["event_type"] for e in stack.events_of(container)]


def alerts_about(stack: Stack, container: str) -> list[dict[str, Any]]:
    return [m for m in stack.discord_messages() if container in json.dumps(m)]


def heal_and_escalate(stack: Stack, sibling: Any) -> None:
    """The three strikes on ``sibling`` and the alert at the Discord-like endpoint."""
    with stack.step(f"{sibling.name}: strike 1, a restart and an escalation"):
        wait_for(lambda: incident_of(stack, sibling.name) == INCIDENT, INCIDENT_TIMEOUT_S,
                 f"the events {INCIDENT} of {sibling.name}", POLL_S)
        restarted = stack.events_of(sibling.name)[1]
        assert restarted["details"]["probe_output"] == "not ready", restarted
        restarted_at = started_at(sibling.client, sibling)
        assert restarted_at != sibling.attrs["State"]["StartedAt"]  # restarted
    with stack.step(f"{sibling.name}: the escalation reaches the Discord-like endpoint"):
        alert = wait_for(lambda: alerts_about(stack, sibling.name), INCIDENT_TIMEOUT_S,
                         f"an alert about {sibling.name}", POLL_S)
        assert len(alert) == 1, alert
        assert "escalated" in json.dumps(alert[0])


def forbidding(stack: Stack) -> dict[str, str] | None:
    """doctor's docker check once it reports something forbidden (the recreated proxy may
    not listen yet at the first call)."""
    docker = stack.doctor()["docker"]
    return docker if "forbidden" in docker["detail"] else None


def secrets_in_no_log_line(stack: Stack) -> None:
    with stack.step("the webhook token, the database password and the page's token are in "
                    "no log line"):
        logs = stack.logs()
        assert '"notification_delivered"' in logs, "no delivery was logged"
        for name in ("E2E_DISCORD_TOKEN", "POSTGRES_PASSWORD", "AEGIS_HTTP_TOKEN"):
            leaking = [line for line in logs.splitlines() if stack.env[name] in line]
            assert leaking == [], f"{name}: {leaking[:3]}"


def test_the_stack_heals_escalates_and_keeps_its_history(
        make_stack: Any, docker_client: Any, stack_images: dict[str, str]) -> None:
    stack = make_stack("e2e", {})
    with stack.step("up -d --build"):
        stack.run("up", "-d", "--build")
    with stack.step("the aegis container turns healthy"):
        aegis_id = wait_healthy(docker_client, stack)
    with stack.step("the image runs aegis as a non-root user, healthy on /healthz, its "
                    "status page behind the token"):
        image_runs_aegis_as_built(docker_client, stack, aegis_id)
    with stack.step("aegis doctor --json has no failing check"):
        checks = no_failing_check(stack)
        for name in ("database", "migrations", "docker", "daemon", "journal",
                     "channel:alerts"):
            assert checks[name]["status"] == "ok", checks[name]
        assert "PostgreSQL" in checks["database"]["detail"]

    busybox = stack_images["busybox"]
    heal_and_escalate(stack, start_sibling(docker_client, stack, busybox, 1))
    secrets_in_no_log_line(stack)
    survives_a_database_restart(stack, start_sibling(docker_client, stack, busybox, 2))
    with stack.step("the evening job run by hand writes the day's journal into its volume"):
        writes_the_journal(stack, docker_client, busybox)
    with stack.step("compose stop aegis stops it within its grace; daemon_stopped recorded"):
        stopped = "SELECT id FROM episodic_memory WHERE event_type = 'daemon_stopped'"
        before = len(stack.sql(stopped))
        stack.run("stop", "aegis")
        state = docker_client.api.inspect_container(aegis_id)["State"]
        assert state["ExitCode"] == 0, state  # 137: killed when the grace ran out
        assert len(stack.sql(stopped)) == before + 1
    keeps_its_history_until_down_v(stack, docker_client)


def image_runs_aegis_as_built(client: Any, stack: Stack, aegis_id: str) -> None:
    image = client.api.inspect_image(client.api.inspect_container(aegis_id)["Image"])
    config = image["Config"]
    assert (config["User"], config["StopSignal"], config["Entrypoint"]) == (
        "aegis", "SIGTERM", ["aegis"])
    assert config["Healthcheck"]["Test"] == ["CMD", "aegis", "check"]
    assert stack.exec("aegis", "id", "-u").stdout.strip() not in ("", "0")
    healthz = stack.exec("aegis", "python", "-c", "import urllib.request; print(urllib."
                         "request.urlopen('http://127.0.0.1:9465/healthz').status)")
    assert healthz.stdout.strip() == "200", healthz.stderr
    # time zones from the tzdata package aegis installs, as on a base image without
    # /usr/share/zoneinfo
    listed = stack.exec("aegis", "env", "AEGIS_TIMEZONE=Europe/Berlin",
                        "PYTHONTZPATH=/no/zoneinfo", "aegis", "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    morning = next(job for job in json.loads(listed.stdout) if job["id"] == "morning_status")
    assert (morning["trigger"], morning["timezone"]) == ("daily at 06:00 Europe/Berlin",
                                                         "Europe/Berlin")
    # the status page, from the templates the image installed, behind its token
    page = stack.exec("aegis", "python", "-c", STATUS_PAGE, stack.env["AEGIS_HTTP_TOKEN"])
    assert page.stdout.split() == ["401", "200", "True"], page.stderr


def survives_a_database_restart(stack: Stack, sibling: Any) -> None:
    with stack.step("restart postgres while an incident is open"):
        wait_for(lambda: incident_of(stack, sibling.name)[:1] == INCIDENT[:1],
                 INCIDENT_TIMEOUT_S, f"strike 1 of {sibling.name}", POLL_S)
        stack.run("restart", "postgres")
    with stack.step("the incident completes, nothing lost"):
        wait_for(lambda: len(incident_of(stack, sibling.name)) >= len(INCIDENT),
                 INCIDENT_TIMEOUT_S, f"the rest of {sibling.name}'s incident", POLL_S)
        assert incident_of(stack, sibling.name) == INCIDENT
        wait_for(lambda: alerts_about(stack, sibling.name), INCIDENT_TIMEOUT_S,
                 f"the alert about {sibling.name}", POLL_S)
        assert len(alerts_about(stack, sibling.name)) == 1
    with stack.step("doctor is clean again after the database restart"):
        no_failing_check(stack)


def writes_the_journal(stack: Stack, client: Any, busybox: str) -> None:
    run = stack.exec("aegis", "aegis", "jobs", "run", "evening_summary", "--wait",
                     "--timeout", "120", timeout_s=180)
    assert run.returncode == 0, run.stderr
    path = stack.sql("SELECT details->>'path' AS path FROM episodic_memory "
                     "WHERE event_type = 'evening_summary'")[-1]["path"]
    assert re.fullmatch(r"/journal/\d{4}-\d\d-\d\d\.md", path), path
    listed = Containers(client, busybox).output(
        ["ls", "/volume"], labels={"aegis.test": stack.project},
        volumes={f"{stack.project}_aegis-journal": {"bind": "/volume", "mode": "ro"}})
    assert path.removeprefix("/journal/") in listed.decode().split()


def keeps_its_history_until_down_v(stack: Stack, client: Any) -> None:
    history = ("SELECT 'event ' || id AS row FROM episodic_memory UNION ALL "
               "SELECT 'run ' || id || ' ' || job_id || ' ' || status FROM job_runs UNION ALL "
               "SELECT 'strikes ' || name || ' ' || phase || ' ' || strikes || ' ' || incident "
               "FROM containers")
    kept = {row["row"] for row in stack.sql(history)}
    assert any(row.startswith("run ") and "evening_summary" in row for row in kept)
    assert any(row.startswith("strikes ") and row.endswith(" escalated 3 1") for row in kept)
    with stack.step("down then up: events, strikes and job history are still there"):
        stack.run("down")
        stack.run("up", "-d")
        wait_healthy(client, stack)
        assert kept - {row["row"] for row in stack.sql(history)} == set()
        no_failing_check(stack)
    with stack.step("down -v removes the volumes"):
        volumes = {f"{stack.project}_{name}"
                   for name in ("aegis-home", "aegis-journal", "aegis-postgres")}
        assert volumes <= {v.name for v in client.volumes.list()}
        stack.run("down", "-v")
        assert volumes & {v.name for v in client.volumes.list()} == set()


def test_the_socket_proxy_profile_heals_and_says_what_the_proxy_forbids(
        make_stack: Any, docker_client: Any, stack_images: dict[str, str]) -> None:
    stack = make_stack("e2e-proxy", {"COMPOSE_PROFILES": "socket-proxy",
                                     "AEGIS_DOCKER_HOST": "tcp://socket-proxy:2375",
                                     "AEGIS_DOCKER_SOCKET": "/dev/null"})
    with stack.step("up -d --build with COMPOSE_PROFILES=socket-proxy"):
        stack.run("up", "-d", "--build")
        proxy_id = stack.container_id("socket-proxy")
    with stack.step("the aegis container turns healthy without the Docker socket"):
        aegis_id = wait_healthy(docker_client, stack)
        mounts = {m["Destination"]: m["Source"]
                  for m in docker_client.api.inspect_container(aegis_id)["Mounts"]}
        assert mounts["/var/run/docker.sock"] == "/dev/null"
    with stack.step("doctor finds Docker through the proxy"):
        docker = no_failing_check(stack)["docker"]
        assert docker["status"] == "ok", docker
        assert " at tcp://socket-proxy:2375, " in docker["detail"], docker

    busybox = stack_images["busybox"]
    heal_and_escalate(stack, start_sibling(docker_client, stack, busybox, 1))
    secrets_in_no_log_line(stack)

    with stack.step("the proxy forbids restarts: doctor says so"):
        stack.files.append("compose.no-restarts.yaml")
        stack.run("up", "-d")
        assert stack.container_id("socket-proxy") != proxy_id  # recreated
        docker = wait_for(lambda: forbidding(stack), 60, "doctor to name the refusal", POLL_S)
        assert docker["status"] == "fail", docker
        assert docker["detail"].endswith("; forbidden (403): container restarts"), docker
        assert "ALLOW_RESTARTS" in docker["hint"], docker
    second = start_sibling(docker_client, stack, busybox, 2)
    with stack.step("a refused restart is one log line, a failed restart and an escalation"):
        wait_for(lambda: "container_escalated" in incident_of(stack, second.name),
                 INCIDENT_TIMEOUT_S, f"the escalation of {second.name}", POLL_S)
        assert incident_of(stack, second.name) == [
            "container_unhealthy", "container_restart_failed", "container_escalated"]
        refused = [line for line in stack.logs("aegis").splitlines()
                   if "container_restart_forbidden" in line]
        assert len(refused) == 1, refused
        record = json.loads(refused[0].partition("| ")[2])
        assert (record["container"], record["level"]) == (second.name, "error"), record
        assert "ALLOW_RESTARTS=1" in record["hint"], record
        assert re.search(rf"403 POST /v[\d.]+/containers/{second.id}/restart",
                         stack.logs("socket-proxy"))
        wait_for(lambda: alerts_about(stack, second.name), INCIDENT_TIMEOUT_S,
                 f"the alert about {second.name}", POLL_S)
