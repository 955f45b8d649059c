"""The pure parts of paging without the database: which messages page, a message marked
sent surviving the spool, and the database outage's record, delay and messages."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

import pytest

from aegis.core.config import load_settings
from aegis.notify.offline import MIN_WATCH_POLL_S, WATCH_POLL_S, offline_message, watch_poll_s
from aegis.storage.dboutage import DatabaseOutage, outage_message, resolved_message
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, IncidentStep, Notification, SentOffline

T0 = datetime(2026, 3, 1, 9, 41, 5, tzinfo=UTC)
SENT = SentOffline(at=T0, sent_by="web-01-7", results={"a1": "delivered"},
                   messages={"a1": "1200"})


@pytest.mark.parametrize(("importance", "edit_only", "sent", "pages"), [
    (Importance.LOW, False, None, False),
    (Importance.MEDIUM, False, None, False),
    (Importance.HIGH, False, None, True),
    (Importance.CRITICAL, False, None, True),
    (Importance.CRITICAL, True, None, False),  # an edit of a message already out
    (Importance.CRITICAL, False, SENT, False),  # sent already
])
def test_what_pages(importance: Importance, edit_only: bool, sent: SentOffline | None,
                    pages: bool) -> None:
    notification = Notification(Channel.ALERTS, "web escalated", importance=importance,
                                edit_only=edit_only, sent=sent)
    assert notification.pages is pages


def test_a_notification_marked_sent_reads_back_from_the_spool_as_it_was() -> None:
    notification = Notification(Channel.ALERTS, "web escalated", importance=Importance.CRITICAL,
                                thread="incident:web-01:web:1", state=IncidentStep.ESCALATED,
                                sent=SENT)
    spooled = json.loads(json.dumps(asdict(notification), default=str))
    assert Notification(**spooled) == notification


def test_the_outage_is_due_once_past_the_delay_until_its_message_is_sent() -> None:
    outage = DatabaseOutage("web-01", since=T0)
    assert not outage.due(T0 + timedelta(seconds=119), 120)
    assert outage.due(T0 + timedelta(seconds=120), 120)
    assert outage.with_message(None).due(T0 + timedelta(minutes=5), 120)  # tried again
    assert not outage.with_message(SENT).due(T0 + timedelta(minutes=5), 120)


def test_the_outage_record_reads_back_as_it_was_written() -> None:
    outage = DatabaseOutage("web-01", since=T0, error="connection refused").with_message(SENT)
    record = json.loads(json.dumps(outage.to_record(), default=str))
    assert record["kind"] == "database_outage"
    assert DatabaseOutage.from_record(record) == outage
    assert DatabaseOutage.from_record({**record, "sent": None}) == replace(outage, sent=None)


def test_the_outage_message_and_its_resolution_share_one_living_message() -> None:
    outage = DatabaseOutage("web-01", since=T0, error="connection refused")
    message = outage_message(outage)
    resolved = resolved_message(outage, T0 + timedelta(minutes=7))
    assert message.title == "aegis on web-01 cannot reach its database since 09:41:05 UTC"
    assert message.importance == Importance.CRITICAL
    assert message.pages
    assert "connection refused" in message.body
    assert resolved.title == "aegis on web-01 reaches its database again"
    assert resolved.body.startswith("**Resolved** after 7 min")
    assert message.thread == resolved.thread == outage.thread
    assert message.dedup_key != resolved.dedup_key
    assert resolved.state == IncidentStep.RECOVERED


def test_a_message_sent_offline_looks_like_its_rows_and_says_so() -> None:
    notification = Notification(Channel.ALERTS, "web escalated on web-01", body="**Escalated**.",
                                importance=Importance.CRITICAL,
                                fields={"host": "web-01", "image": "nginx"},
                                state=IncidentStep.ESCALATED)
    message = offline_message(notification, "web-01", "web-01-7", T0)
    assert message.fields == (("host", "web-01"), ("image", "nginx"))
    assert message.footer == "aegis on web-01 · sent by web-01-7 without its database"
    assert message.colour == 0xE74C3C


@pytest.mark.parametrize(("alert_after", "poll_s"), [
    ("2m", WATCH_POLL_S), ("8s", 2.0), ("1s", MIN_WATCH_POLL_S), ("off", WATCH_POLL_S)])
def test_the_watch_asks_often_enough_for_its_delay(alert_after: str, poll_s: float) -> None:
    settings = load_settings({"AEGIS_DB_OUTAGE_ALERT_AFTER": alert_after})
    assert watch_poll_s(settings) == poll_s
