"""The container's last log lines in every incident, on the real engine: what the Docker
adapter reads (the last 20 lines, redacted, cut), what it says when the engine cannot read
them back (a log driver that keeps none, one that sends them elsewhere, no engine at all),
and a real ``aegis run`` recording them in the restart's and the escalation's details and
posting them to the Discord-like server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aegis.supervision.docker import LOG_LINE_CHARS, LOG_TAIL_LINES, log_tail, sighting_from_inspect
from tests.support.containers import EXIT_ON_TERM, IDLE, OK_FILE
from tests.support.daemons import Spawner, run_daemon
from tests.support.discord import FakeDiscord
from tests.support.rows import events_of, types_of
from tests.support.supervision import SocketProxy
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

DSN_LINE = "connecting to postgres://app:s3cretpw@db:5432/app"
# Healthy at its first start until it prints boom-7f3a (after a line holding a password);
# at every later start unhealthy at once: restarted, then escalated.
FAILS_AFTER_BOOM = (f"{EXIT_ON_TERM}[ -f /once ] || touch /ok /once; echo '{DSN_LINE}'; "
                    "sleep 2 & wait; echo boom-7f3a; rm -f /ok; "
                    "while :; do sleep 1 & wait; done")
NONE_DRIVER_MESSAGE = "log driver none: the engine keeps no logs to read"


def logs_say(client: Any, container: Any, text: str) -> Callable[[], bool]:
    return lambda: text in client.api.logs(container.id).decode()


def test_the_last_20_lines_are_read_redacted_and_cut(
        docker_client: Any, make_container: Callable[..., Any]) -> None:
    # the engine copies stdout and stderr apart: a pause on each side of the stderr line
    # keeps the order
    script = ("for n in $(seq 1 24); do echo line-$n; done; sleep 1; "
              f"echo '{DSN_LINE}' >&2; sleep 1; printf 'x%.0s' $(seq 1 400); echo; "
              f"echo last-line; {IDLE}")
    chatty = make_container(script, healthcheck=None)
    wait_for(logs_say(docker_client, chatty, "last-line"), what="its logs")
    seen = sighting_from_inspect(docker_client.api.inspect_container(chatty.id))
    assert seen.log_driver == "json-file"

    tail = log_tail(docker_client, seen)

    assert tail.unavailable == ""
    assert len(tail.lines) == LOG_TAIL_LINES
    assert tail.lines[0] == "line-8"  # 24 lines, the stderr one, the long one and the last
    assert tail.lines[-4:-2] == ("line-24", "connecting to postgres://app:***@db:5432/app")
    assert tail.lines[-2] == "x" * (LOG_LINE_CHARS - 1) + "…"
    assert tail.lines[-1] == "last-line"


@pytest.mark.parametrize("tty", [False, True], ids=["framed", "tty"])
def test_an_inspected_containers_tail_is_one_call_to_the_engine(
        tty: bool, proxy: SocketProxy, docker_client: Any,
        make_container: Callable[..., Any]) -> None:
    """Framed (stdout and stderr apart) or raw (a TTY), as the inspect told: no inspect of
    its own before the read, which a busy engine answers slowly."""
    container = make_container(f"echo first; echo second; {IDLE}", healthcheck=None, tty=tty)
    wait_for(logs_say(docker_client, container, "second"), what="its logs")
    seen = sighting_from_inspect(docker_client.api.inspect_container(container.id))
    assert seen.tty is tty
    through = proxy.client()
    try:
        tail = log_tail(through, seen)
    finally:
        through.close()
    assert tail.lines == ("first", "second")
    assert len(proxy.asked(f"/containers/{container.id}/")) == 1


def test_a_container_logging_nowhere_says_so(
        docker_client: Any, make_container: Callable[..., Any]) -> None:
    silent = make_container(IDLE, healthcheck=None, log_config={"type": "none"})
    seen = sighting_from_inspect(docker_client.api.inspect_container(silent.id))
    assert log_tail(docker_client, seen).unavailable == NONE_DRIVER_MESSAGE


def test_a_driver_that_sends_the_logs_elsewhere_says_the_engine_cannot_read_them(
        docker_client: Any, make_container: Callable[..., Any]) -> None:
    # GELF over UDP needs no listener to start; without the engine's local copy (dual
    # logging), `docker logs` answers 501 "does not support reading"
    remote = make_container(IDLE, healthcheck=None, log_config={
        "type": "gelf", "config": {"gelf-address": "udp://127.0.0.1:12201",
                                   "cache-disabled": "true"}})
    seen = sighting_from_inspect(docker_client.api.inspect_container(remote.id))
    assert log_tail(docker_client, seen).unavailable == (
        "log driver gelf: the engine cannot read these logs back; they are where the "
        "driver sends them")


def test_no_engine_says_the_logs_could_not_be_read(
        docker_client: Any, make_container: Callable[..., Any]) -> None:
    import docker

    running = make_container(IDLE, healthcheck=None)
    seen = sighting_from_inspect(docker_client.api.inspect_container(running.id))
    gone = docker.DockerClient(base_url="unix:///tmp/aegis-no-engine-here.sock",
                               version="1.41", timeout=2)
    try:
        tail = log_tail(gone, seen)
    finally:
        gone.close()
    assert tail.lines == ()
    assert tail.unavailable.startswith("the logs could not be read: ")


@pytest.mark.usefixtures("engine_to_ourselves")
def test_the_restart_and_escalation_carry_the_last_log_lines_to_discord(
        aegis_env: dict[str, str], spawn: Spawner, make_container: Callable[..., Any],
        fake: FakeDiscord) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    sick = make_container(FAILS_AFTER_BOOM, healthcheck=OK_FILE,
                          labels={"aegis.enable": "true"})
    run_daemon(spawn, aegis_env, DISCORD_WEBHOOK_URL=fake.webhook_url())
    wait_for(lambda: "container_escalated" in types_of(url, sick.name), timeout_s=60,
             what="the escalation")
    wait_for(lambda: fake.received, timeout_s=30, what="the escalation's post")

    assert types_of(url, sick.name) == ["container_unhealthy", "container_restarted",
                                        "container_escalated"]
    struck, restarted, escalated = (e["details"] for e in events_of(url, sick.name))
    assert "log_tail" not in struck  # strike 1 reads no logs
    for details in (restarted, escalated):
        assert "boom-7f3a" in details["log_tail"]
        assert "connecting to postgres://app:***@db:5432/app" in details["log_tail"]
        assert "s3cretpw" not in str(details)
    description = fake.received[0]["embeds"][0]["description"]
    assert "Last log lines:\n" in description
    assert "boom-7f3a" in description
    assert "s3cretpw" not in description
    assert description.endswith("or the container is healthy again.")
    assert fake.rejected == []


@pytest.mark.usefixtures("engine_to_ourselves")
def test_an_incident_of_a_container_logging_nowhere_says_the_logs_cannot_be_read(
        aegis_env: dict[str, str], spawn: Spawner, make_container: Callable[..., Any],
        fake: FakeDiscord) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    breaks = (f"{EXIT_ON_TERM}[ -f /once ] || touch /ok /once; sleep 2 & wait; rm -f /ok; "
              "while :; do sleep 1 & wait; done")
    silent = make_container(breaks, healthcheck=OK_FILE, labels={"aegis.enable": "true"},
                            log_config={"type": "none"})
    run_daemon(spawn, aegis_env, DISCORD_WEBHOOK_URL=fake.webhook_url())
    wait_for(lambda: "container_escalated" in types_of(url, silent.name), timeout_s=60,
             what="the escalation")
    wait_for(lambda: fake.received, timeout_s=30, what="the escalation's post")

    restarted, escalated = (e["details"] for e in events_of(url, silent.name)[1:])
    for details in (restarted, escalated):
        assert details["log_tail_unavailable"] == NONE_DRIVER_MESSAGE
        assert "log_tail" not in details
    description = fake.received[0]["embeds"][0]["description"]
    assert f"Last log lines: {NONE_DRIVER_MESSAGE}" in description
    assert fake.rejected == []
