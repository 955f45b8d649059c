"""The escalation route's pager against the real PostgreSQL, on a clock the test gives: a
page when the delay has passed and not before, once (or once per repeat), never after an
acknowledgement or a recovery, once for two daemons, and delivered to the second route's
Discord-like endpoint with the escalation's context."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aegis import api
from aegis.core.clock import utcnow
from aegis.notify.sender import deliver_pending
from aegis.notify.testmessage import send_test_message
from aegis.reports.retention import prune_all, retention_cutoffs
from aegis.storage.outbox import Channel
from aegis.supervision.containers import acknowledge
from aegis.supervision.escalation import Pager
from tests.support.discord import FakeDiscord
from tests.support.rows import execute, sql_rows

AFTER_S = 20


def escalated(url: str, name: str, at: datetime, incident: int = 1) -> None:
    """A container of test-host escalated at ``at`` (strike 1 a minute before)."""
    log = [{"at": (at - timedelta(minutes=1)).isoformat(), "step": "struck",
            "text": "unhealthy"},
           {"at": at.isoformat(), "step": "escalated", "text": "still unhealthy after a restart",
            "alerted": True, "probe": "connection refused"}]
    execute(url, "INSERT INTO containers (host, name, image, phase, state, strikes, incident, "
                 "incident_log) VALUES ('test-host', %s, 'shop/web:3', 'escalated', "
                 "'escalated', 3, %s, %s::jsonb)", name, incident, json.dumps(log))


def pages_of(url: str) -> list[dict[str, Any]]:
    return sql_rows(url, "SELECT e.details->>'container' AS container, e.details->>'page' AS page, "
                         "o.channel, o.title FROM episodic_memory e "
                         "JOIN outbox o ON o.event_uid = e.uid "
                         "WHERE e.event_type = 'escalation_paged' ORDER BY e.id")


def pager_app(make_app: Callable[..., api.Aegis], oncall: FakeDiscord, host: str = "test-host",
              **extra: str) -> api.Aegis:
    return make_app(host, AEGIS_ESCALATE_AFTER=f"{AFTER_S}s",
                    AEGIS_ESCALATION_URLS=oncall.webhook_url(), **extra)


def test_a_page_when_the_delay_has_passed_once_and_to_the_second_route(
        make_app: Callable[..., api.Aegis], fake: FakeDiscord, database_url: str) -> None:
    app = pager_app(make_app, fake)
    at = utcnow()
    escalated(database_url, "web", at)
    pager = Pager(app)

    assert pager.page_due(at + timedelta(seconds=AFTER_S - 1)) == []
    assert pager.next_due() == at + timedelta(seconds=AFTER_S)
    [event] = pager.page_due(at + timedelta(seconds=AFTER_S))
    assert pager.page_due(at + timedelta(hours=5)) == []  # no repeat: once
    assert pager.next_due() is None

    assert event.host == "test-host"
    assert event.details["page"] == 1
    assert pages_of(database_url) == [{
        "container": "web", "page": "1", "channel": "escalation",
        "title": "web on test-host: escalation not acknowledged"}]
    deliver_pending(app)
    [post] = fake.received
    embed = post["embeds"][0]
    assert embed["title"] == "web on test-host: escalation not acknowledged"
    assert embed["description"].startswith(
        f"**Not acknowledged** within 20s of its escalation at {at:%Y-%m-%d %H:%M:%S} UTC.")
    # the escalation's own context: its reason, the probe, how to take it over
    assert "still unhealthy after a restart" in embed["description"]
    assert "connection refused" in embed["description"]
    assert "`aegis ack web`" in embed["description"]
    assert fake.rejected == []


def test_a_repeat_while_the_incident_stays_open(
        make_app: Callable[..., api.Aegis], fake: FakeDiscord, database_url: str) -> None:
    app = pager_app(make_app, fake, AEGIS_ESCALATION_REPEAT="10m")
    at = utcnow()
    escalated(database_url, "web", at)
    pager = Pager(app)
    first = at + timedelta(seconds=AFTER_S)

    assert len(pager.page_due(first)) == 1
    assert pager.page_due(first + timedelta(minutes=9)) == []
    [second] = pager.page_due(first + timedelta(minutes=10))
    assert second.details["page"] == 2
    assert [p["title"] for p in pages_of(database_url)] == [
        "web on test-host: escalation not acknowledged",
        "web on test-host: escalation not acknowledged (page 2)"]

    acknowledge(app, "web", first + timedelta(minutes=11))
    assert pager.page_due(first + timedelta(hours=1)) == []


def test_acknowledged_or_recovered_before_the_delay_never_pages(
        make_app: Callable[..., api.Aegis], fake: FakeDiscord, database_url: str) -> None:
    app = pager_app(make_app, fake)
    at = utcnow()
    escalated(database_url, "acked", at)
    escalated(database_url, "healed", at)
    assert acknowledge(app, "acked", at + timedelta(seconds=5), by="alice")
    execute(database_url, "UPDATE containers SET phase = 'ok', state = 'ok' "
                          "WHERE name = 'healed'")

    assert Pager(app).page_due(at + timedelta(hours=1)) == []
    assert pages_of(database_url) == []


def test_acknowledged_and_escalated_again_pages_the_new_escalation(
        make_app: Callable[..., api.Aegis], fake: FakeDiscord, database_url: str) -> None:
    app = pager_app(make_app, fake)
    at = utcnow()
    escalated(database_url, "web", at)
    pager = Pager(app)
    assert len(pager.page_due(at + timedelta(seconds=AFTER_S))) == 1
    again = at + timedelta(minutes=5)
    execute(database_url, "UPDATE containers SET incident_log = incident_log || %s::jsonb "
                          "WHERE name = 'web'",
            json.dumps([{"at": again.isoformat(), "step": "escalated", "text": "again"}]))

    assert pager.page_due(again + timedelta(seconds=AFTER_S - 1)) == []
    [event] = pager.page_due(again + timedelta(seconds=AFTER_S))
    assert event.details["escalated_at"] == again.isoformat()


def test_two_daemons_paging_at_once_send_one_page(
        make_app: Callable[..., api.Aegis], fake: FakeDiscord, database_url: str) -> None:
    apps = [pager_app(make_app, fake, host) for host in ("test-host", "other-host")]
    at = utcnow()
    for n in range(5):
        escalated(database_url, f"web-{n}", at)
    due = at + timedelta(seconds=AFTER_S)
    start = threading.Barrier(2)
    paged: list[int] = []

    def page(app: api.Aegis) -> None:
        start.wait()
        paged.append(len(Pager(app).page_due(due)))

    threads = [threading.Thread(target=page, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sum(paged) == 5
    assert sorted(p["container"] for p in pages_of(database_url)) == [
        f"web-{n}" for n in range(5)]
    # the page of another host's incident: recorded as that host's, sent by whoever paged
    paged_by = {row["paged_by"] for row in sql_rows(
        database_url, "SELECT details->>'paged_by' AS paged_by FROM episodic_memory "
                      "WHERE event_type = 'escalation_paged'")}
    assert paged_by <= {"test-host", "other-host"}


def test_the_pages_of_an_incident_over_are_pruned_past_retention_and_an_open_ones_kept(
        make_app: Callable[..., api.Aegis], fake: FakeDiscord, database_url: str) -> None:
    app = pager_app(make_app, fake)
    at = utcnow() - timedelta(days=40)
    escalated(database_url, "still", at)
    escalated(database_url, "over", at)
    Pager(app).page_due(at + timedelta(seconds=AFTER_S))
    execute(database_url, "UPDATE containers SET phase = 'ok' WHERE name = 'over'")
    [*_, pages] = prune_all(app, retention_cutoffs(
        utcnow(), event_retention_s=86400, job_runs_retention_s=86400,
        outbox_retention_s=86400, container_retention_s=30 * 86400))

    assert (pages.table, pages.rows) == ("escalation_pages", 1)
    assert sql_rows(database_url, "SELECT container FROM escalation_pages") == [
        {"container": "still"}]
    assert Pager(app).page_due(utcnow()) == []  # the open one is not paged again


def test_notify_test_reaches_the_escalation_route(
        make_app: Callable[..., api.Aegis], fake: FakeDiscord) -> None:
    sent = send_test_message(pager_app(make_app, fake), Channel.ESCALATION)
    assert sent.row is not None
    assert sent.row.status == "delivered"
    assert [p["embeds"][0]["title"] for p in fake.received] == ["aegis test message"]


def test_a_daemon_without_the_route_leaves_the_pages_to_one_that_has_it(
        make_app: Callable[..., api.Aegis], fake: FakeDiscord, database_url: str) -> None:
    paging = pager_app(make_app, fake)
    other = make_app("other-host")  # no escalation route of its own
    at = utcnow() - timedelta(seconds=AFTER_S)
    escalated(database_url, "web", at)
    Pager(paging).page_due(utcnow())

    deliver_pending(other)
    assert sql_rows(database_url, "SELECT status FROM outbox WHERE channel = 'escalation'") == [
        {"status": "pending"}]
    deliver_pending(paging)
    assert len(fake.received) == 1
