"""Paging without the database, against the local Discord-like server: a store whose
database does not answer (nothing listens on its port) sends an escalation at once and
spools it as sent; written back through the test's real database, the row is delivered,
never sent again, and its thread adopts the message, so the recovery edits it. The
database's own outage: one message after AEGIS_DB_OUTAGE_ALERT_AFTER, not posted again
by a watch started afresh (a restarted daemon), resolved by an edit once it is back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aegis import api
from aegis.core.config import Settings
from aegis.notify.discord import DiscordTarget
from aegis.notify.offline import DatabaseWatch, DirectPager
from aegis.notify.targets import Target
from aegis.storage.db import Database
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, IncidentStep, Notification
from aegis.storage.store import Store
from tests.support.discord import FakeDiscord
from tests.support.outbox import drain, outbox, sender
from tests.support.ports import free_port
from tests.support.rows import sql_rows

THREAD = "incident:test-host:web:1"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class OfflineRuntime:
    """What a daemon is handed, on a database that does not answer."""

    settings: Settings
    db: Database
    store: Store
    pager: DirectPager


@pytest.fixture
def unreachable() -> Iterator[Database]:
    """A database nothing answers for: no server listens on its port."""
    db = Database(f"postgresql://aegis@127.0.0.1:{free_port()}/aegis", timeout_s=1.0)
    yield db
    db.close()


def offline(app: api.Aegis, db: Database, targets: list[Target]) -> OfflineRuntime:
    """The app's host on the unreachable database, spooling to the app's spool (so the
    app writes back what it spooled) and paging ``targets``."""
    pager = DirectPager(app.settings, targets={Channel.ALERTS: targets}, instance="offline",
                        clock=lambda: T0)
    store = Store(db, app.store.spool, app.settings.host, clock=lambda: T0,
                  replays=api.spool_replays(app.settings), pager=pager)
    return OfflineRuntime(app.settings, db, store, pager)


IMPORTANCE = {"restarted": Importance.HIGH, "escalated": Importance.CRITICAL}


def living_step(store: Store, state: str) -> None:
    """One step of an incident's living message, as aegis queues it (AEGIS_ALERT_FROM=
    restart): the restart and the recovery edit it, the escalation announces it."""
    store.record_event("test_step", f"web {state}", notify=Notification(
        Channel.ALERTS, f"web {state} on test-host", body=f"**{state.capitalize()}**.",
        importance=IMPORTANCE.get(state, Importance.MEDIUM), dedup_key=f"{THREAD}:{state}",
        groupable=False, thread=THREAD, state=IncidentStep(state),
        edit_only=state == "restarted"))


def spooled(app: api.Aegis) -> list[dict[str, Any]]:
    return [json.loads(line) for line in app.store.spool.path.read_text().splitlines()]


def later(app: api.Aegis) -> datetime:
    """A time after every row of the outbox was queued (the sender's clock)."""
    latest: datetime = outbox(app)[-1]["created_at"]
    return latest + timedelta(seconds=1)


def titles_posted(fake: FakeDiscord) -> list[str]:
    return [body["embeds"][0]["title"] for body in fake.received]


def test_an_escalation_goes_out_at_once_and_its_recovery_edits_it(
        app: api.Aegis, unreachable: Database, fake: FakeDiscord) -> None:
    target = DiscordTarget(fake.webhook_url())
    down = offline(app, unreachable, [target])
    living_step(down.store, "restarted")  # an edit: waits in the spool, as before
    assert fake.received == []
    living_step(down.store, "escalated")
    assert titles_posted(fake) == ["web escalated on test-host"]
    posted = next(iter(fake.messages))
    notify = spooled(app)[-1]["notify"]
    assert notify["sent"]["messages"] == {target.id: posted}
    assert "without its database" in fake.received[0]["embeds"][0]["footer"]["text"]

    assert app.store.replay_spool() == 2  # the database answers
    rows = outbox(app)
    # the restart's edit says less than the escalation out already: delivered with it
    assert [(r["state"], r["status"], r["merged_into"]) for r in rows] == [
        ("restarted", "delivered", rows[1]["id"]), ("escalated", "delivered", None)]
    assert rows[1]["target_results"] == {target.id: "delivered"}
    assert sql_rows(app.db.dsn, "SELECT thread, message_id FROM outbox_messages") == [
        {"thread": THREAD, "message_id": posted}]
    app.store.replay_spool()  # written back once, whatever replays it again
    assert len(outbox(app)) == 2

    living_step(app.store, "recovered")
    drain(sender(app, [target]), later(app))
    assert titles_posted(fake) == ["web escalated on test-host"], "posted twice"
    assert [(mid, body["embeds"][0]["title"]) for mid, body in fake.edits] == [
        (posted, "web recovered on test-host")]
    assert fake.rejected == []


def test_a_destination_that_did_not_take_it_is_left_to_the_sender(
        app: api.Aegis, unreachable: Database, fake: FakeDiscord) -> None:
    other = FakeDiscord()
    try:
        other.script("500")
        first, second = DiscordTarget(fake.webhook_url()), DiscordTarget(other.webhook_url())
        living_step(offline(app, unreachable, [first, second]).store, "escalated")
        assert (len(fake.received), len(other.received)) == (1, 0)
        app.store.replay_spool()
        assert [r["status"] for r in outbox(app)] == ["pending"]
        drain(sender(app, [first, second]), later(app))
        assert (len(fake.received), len(other.received)) == (1, 1)
        assert outbox(app)[0]["target_results"] == {first.id: "delivered",
                                                    second.id: "delivered"}
    finally:
        other.close()


def test_nothing_taken_waits_in_the_spool_as_before(
        app: api.Aegis, unreachable: Database, fake: FakeDiscord) -> None:
    fake.script("500")
    target = DiscordTarget(fake.webhook_url())
    living_step(offline(app, unreachable, [target]).store, "escalated")
    assert spooled(app)[-1]["notify"]["sent"] is None
    app.store.replay_spool()
    drain(sender(app, [target]), later(app))
    assert titles_posted(fake) == ["web escalated on test-host"]


def test_the_database_outage_is_one_message_resolved_when_it_is_back(
        make_app: Any, unreachable: Database, fake: FakeDiscord) -> None:
    app = make_app("test-host", AEGIS_DB_OUTAGE_ALERT_AFTER="2m")
    target = DiscordTarget(fake.webhook_url())
    down = offline(app, unreachable, [target])
    watch = DatabaseWatch(down, down.pager)
    watch.look(T0)
    watch.look(T0 + timedelta(seconds=119))
    assert fake.received == []
    watch.look(T0 + timedelta(seconds=120))
    assert titles_posted(fake) == [
        "aegis on test-host cannot reach its database since 12:00:00 UTC"]
    restarted = DatabaseWatch(down, down.pager)
    restarted.look(T0 + timedelta(minutes=5))  # a daemon started afresh mid-outage
    watch.look(T0 + timedelta(minutes=6))
    assert len(fake.received) == 1, "posted again"
    assert [r["kind"] for r in spooled(app)] == ["database_outage"] * 2

    watch.runtime = app  # its database answers again: the outage is written back
    watch.look(T0 + timedelta(minutes=7))
    events = sql_rows(app.db.dsn, "SELECT importance, timestamp, details FROM episodic_memory "
                                  "WHERE event_type = 'database_outage'")
    assert len(events) == 1
    assert events[0]["importance"] == "high"
    assert events[0]["timestamp"] == T0
    assert events[0]["details"]["message_sent"] is True
    drain(sender(app, [target]), later(app))
    posted = next(iter(fake.messages))
    assert [(mid, body["embeds"][0]["title"]) for mid, body in fake.edits] == [
        (posted, "aegis on test-host reaches its database again")]
    assert fake.messages[posted]["embeds"][0]["description"].startswith("**Resolved** after ")
    assert len(fake.received) == 1
    assert watch.outage is None


def test_an_outage_shorter_than_the_delay_leaves_nothing(
        make_app: Any, unreachable: Database, fake: FakeDiscord) -> None:
    app = make_app("test-host", AEGIS_DB_OUTAGE_ALERT_AFTER="2m")
    down = offline(app, unreachable, [DiscordTarget(fake.webhook_url())])
    watch = DatabaseWatch(down, down.pager)
    watch.look(T0)
    watch.look(T0 + timedelta(seconds=90))
    app.store.replay_spool()
    assert fake.received == []
    assert app.store.spool.pending() == 0
    assert sql_rows(app.db.dsn, "SELECT 1 FROM episodic_memory WHERE event_type = "
                                "'database_outage'") == []
