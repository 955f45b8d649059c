"""The escalation route with real daemons, the real engine and two Discord-like endpoints
(the alerts channel, and the second route of AEGIS_ESCALATION_URLS), AEGIS_ESCALATE_AFTER
20s: an escalation nobody acknowledges reaches the second route exactly once, with two
daemons on one database and across a kill -9 of the daemon during the delay; one
acknowledged before the delay never does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from aegis.core.clock import utcnow
from aegis.supervision.escalation import POLL_S
from tests.support.cli import run_cli
from tests.support.containers import NEVER_HEALTHY, OK_FILE
from tests.support.daemons import Spawner, daemon_env, daemon_running, kill_9, run_daemon
from tests.support.discord import FakeDiscord
from tests.support.rows import events_of_type, sql_rows
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.serial]

AFTER_S = 20


@pytest.fixture
def oncall() -> Iterator[FakeDiscord]:
    """The second route's Discord-like endpoint."""
    server = FakeDiscord()
    yield server
    server.close()


def route(alerts: FakeDiscord, oncall: FakeDiscord) -> dict[str, str]:
    return {"DISCORD_WEBHOOK_URL": alerts.webhook_url(), "AEGIS_ESCALATE_AFTER": f"{AFTER_S}s",
            "AEGIS_ESCALATION_URLS": oncall.webhook_url()}


def escalated_at(url: str, name: str) -> datetime | None:
    rows = sql_rows(url, "SELECT timestamp FROM episodic_memory WHERE event_type = "
                         "'container_escalated' AND details->>'container' = %s", name)
    return rows[0]["timestamp"] if rows else None


def pages(url: str) -> list[dict[str, Any]]:
    return events_of_type(url, "escalation_paged")


def quiet_until(moment: datetime) -> Callable[[], bool]:
    """Past ``moment`` and every pager's next look after it."""
    return lambda: utcnow() > moment + timedelta(seconds=2 * POLL_S)


@pytest.mark.usefixtures("engine_to_ourselves")
def test_two_daemons_page_an_unacknowledged_escalation_once_and_an_acknowledged_one_never(
        aegis_env: dict[str, str], spawn: Spawner, make_container: Callable[..., Any],
        fake: FakeDiscord, oncall: FakeDiscord) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    left = make_container(NEVER_HEALTHY, healthcheck=OK_FILE, labels={"aegis.enable": "true"})
    acked = make_container(NEVER_HEALTHY, healthcheck=OK_FILE, labels={"aegis.enable": "true"})
    run_daemon(spawn, aegis_env, **route(fake, oncall))
    # a second daemon on the database, supervising nothing: its pager sees the same rows
    spawn(daemon_env(aegis_env, AEGIS_HOST="second-host",
                     AEGIS_HOME=aegis_env["AEGIS_HOME"] + "-second", AEGIS_JOB_MODULES="",
                     **route(fake, oncall)))
    wait_for(daemon_running(url, "second-host"), what="the second daemon")
    wait_for(lambda: escalated_at(url, left.name) and escalated_at(url, acked.name),
             timeout_s=60, what="both escalations")

    ack = run_cli("ack", acked.name, env=aegis_env)
    assert ack.returncode == 0, ack.stderr
    acked.exec_run(["touch", "/ok"])  # healthy again: no second escalation
    acked_at = escalated_at(url, acked.name)
    assert acked_at is not None
    assert utcnow() < acked_at + timedelta(seconds=AFTER_S), \
        "the acknowledgement came after the delay: the test needs a longer one"

    wait_for(lambda: oncall.received, timeout_s=60, what="the page on the second route")
    left_at = escalated_at(url, left.name)
    assert left_at is not None
    wait_for(quiet_until(max(acked_at, left_at) + timedelta(seconds=AFTER_S)),
             timeout_s=60, what="every pager past both delays")

    [page] = oncall.received
    assert page["embeds"][0]["title"] == (
        f"{left.name} on test-host: escalation not acknowledged")
    assert "**Not acknowledged** within 20s" in page["embeds"][0]["description"]
    [event] = pages(url)
    assert event["details"]["container"] == left.name
    assert event["timestamp"] >= left_at + timedelta(seconds=AFTER_S)
    # the alerts channel got the escalations, never the page
    assert all("not acknowledged" not in p["embeds"][0]["title"] for p in fake.received)
    assert oncall.rejected == []


@pytest.mark.usefixtures("engine_to_ourselves")
def test_a_daemon_killed_during_the_delay_is_succeeded_by_one_that_pages_once(
        aegis_env: dict[str, str], spawn: Spawner, make_container: Callable[..., Any],
        fake: FakeDiscord, oncall: FakeDiscord) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    sick = make_container(NEVER_HEALTHY, healthcheck=OK_FILE, labels={"aegis.enable": "true"})
    first = run_daemon(spawn, aegis_env, **route(fake, oncall))
    wait_for(lambda: escalated_at(url, sick.name), timeout_s=60, what="the escalation")
    kill_9(first)
    at = escalated_at(url, sick.name)
    assert at is not None
    assert utcnow() < at + timedelta(seconds=AFTER_S), \
        "the kill came after the delay: the test needs a longer one"
    assert pages(url) == []

    run_daemon(spawn, aegis_env, **route(fake, oncall))
    wait_for(lambda: oncall.received, timeout_s=60, what="the page on the second route")
    wait_for(quiet_until(at + timedelta(seconds=AFTER_S)), timeout_s=60,
             what="the pager past the delay")

    [page] = oncall.received
    assert page["embeds"][0]["title"] == f"{sick.name} on test-host: escalation not acknowledged"
    [event] = pages(url)
    assert event["timestamp"] >= at + timedelta(seconds=AFTER_S)
