"""Living messages through the outbox against the local Discord-like server: the first row
of a thread is posted with ?wait=true and its message id kept, every later row edits that
message in place, in the channel's order with the other alerts, through 429s and 5xxs,
across a new sender (a daemon restart); a message deleted by a person is posted afresh;
Apprise, which cannot edit, gets only the rows meant for it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aegis import api
from aegis.notify.apprise import AppriseTarget
from aegis.notify.discord import DiscordTarget
from aegis.notify.sender import SKIPPED
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, IncidentStep, Notification
from tests.support.discord import FakeDiscord
from tests.support.outbox import drain, outbox, sender
from tests.support.rows import sql_rows

THREAD = "incident:test-host:web:1"


def step(app: api.Aegis, state: str, *, thread: str = THREAD, edit_only: bool = False) -> None:
    """Queue one step of an incident's living message: the whole message, as aegis does."""
    app.store.record_event("test_step", f"web {state}", notify=Notification(
        Channel.ALERTS, f"web {state} on test-host", body=f"**{state.capitalize()}**.",
        importance=Importance.CRITICAL if state == "escalated" else Importance.MEDIUM,
        dedup_key=f"{thread}:{state}", thread=thread, state=IncidentStep(state),
        edit_only=edit_only))


def plain(app: api.Aegis, title: str) -> None:
    app.store.record_event("test_message", title, notify=Notification(
        Channel.ALERTS, title, importance=Importance.HIGH, groupable=False))


def kept(app: api.Aegis) -> list[dict[str, Any]]:
    return sql_rows(app.db.dsn, "SELECT thread, message_id, edited_at IS NOT NULL AS edited "
                                "FROM outbox_messages ORDER BY thread")


def now_of(app: api.Aegis) -> datetime:
    latest: datetime = outbox(app)[-1]["created_at"]
    return latest + timedelta(seconds=1)


def test_one_message_is_posted_then_edited_in_place_in_the_channels_order(
        app: api.Aegis, fake: FakeDiscord) -> None:
    step(app, "escalated")
    plain(app, "a job failed")  # another alert between two steps: the order holds
    step(app, "acknowledged")
    step(app, "recovered")
    drain(sender(app, [DiscordTarget(fake.webhook_url())], instance="threads", seed=3),
          now_of(app))

    assert [p["embeds"][0]["title"] for p in fake.received] == [
        "web escalated on test-host", "a job failed"]
    message_id = next(iter(fake.messages))
    assert [(mid, body["embeds"][0]["title"]) for mid, body in fake.edits] == [
        (message_id, "web acknowledged on test-host"), (message_id, "web recovered on test-host")]
    assert fake.messages[message_id]["embeds"][0]["title"] == "web recovered on test-host"
    assert fake.messages[message_id]["embeds"][0]["color"] == 0x2ECC71
    assert fake.edits[-1][1]["allowed_mentions"] == {"parse": []}
    assert [r["status"] for r in outbox(app)] == ["delivered"] * 4
    assert kept(app) == [{"thread": THREAD, "message_id": message_id, "edited": True}]
    assert fake.rejected == []


def test_a_new_sender_edits_the_message_an_earlier_one_posted(app: api.Aegis,
                                                               fake: FakeDiscord) -> None:
    step(app, "restarted")
    drain(sender(app, [DiscordTarget(fake.webhook_url())], instance="first", seed=3),
          now_of(app))
    step(app, "escalated")  # queued while no daemon ran; delivered by the next one
    drain(sender(app, [DiscordTarget(fake.webhook_url())], instance="second", seed=3),
          now_of(app))
    assert len(fake.received) == 1
    assert [mid for mid, _ in fake.edits] == list(fake.messages)


def test_an_edit_waits_out_429s_and_5xxs_like_a_post(app: api.Aegis,
                                                     fake: FakeDiscord) -> None:
    step(app, "escalated")
    s = sender(app, [DiscordTarget(fake.webhook_url())], instance="threads", seed=3)
    t0 = now_of(app)
    s.deliver(t0)
    step(app, "recovered")
    fake.script("429:20", "500")
    s.deliver(t0 + timedelta(seconds=1))
    row = outbox(app)[-1]
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["next_attempt_at"] == t0 + timedelta(seconds=21.05)  # Discord's retry_after
    s.deliver(t0 + timedelta(seconds=20))
    assert fake.answers == [200, 429]  # nothing before retry_after
    drain(s, t0 + timedelta(seconds=22))
    assert fake.answers == [200, 429, 500, 200]
    assert len(fake.received) == 1
    assert len(fake.edits) == 1


def test_a_message_deleted_by_a_person_is_posted_afresh_and_edited_from_then_on(
        app: api.Aegis, fake: FakeDiscord) -> None:
    step(app, "escalated")
    s = sender(app, [DiscordTarget(fake.webhook_url())], instance="threads", seed=3)
    s.deliver(now_of(app))
    first = next(iter(fake.messages))
    fake.delete_message(first)
    step(app, "acknowledged")
    step(app, "recovered")
    drain(s, now_of(app))
    assert len(fake.received) == 2  # one new message, not one per step
    second = [mid for mid in fake.messages if mid != first]
    assert fake.answers == [200, 404, 200, 200]
    assert [mid for mid, _ in fake.edits] == second
    assert fake.messages[second[0]]["embeds"][0]["title"] == "web recovered on test-host"
    assert kept(app)[0]["message_id"] == second[0]
    assert [r["status"] for r in outbox(app)] == ["delivered"] * 3


def test_apprise_gets_the_steps_meant_for_it_and_never_an_update(app: api.Aegis,
                                                                   fake: FakeDiscord) -> None:
    step(app, "escalated")
    step(app, "acknowledged", edit_only=True)
    step(app, "recovered")
    drain(sender(app, [DiscordTarget(fake.webhook_url()), AppriseTarget(fake.json_url())],
                 instance="threads", seed=3),
          now_of(app))
    assert [body["title"] for body in fake.json_received] == [
        "web escalated on test-host", "web recovered on test-host"]
    assert len(fake.received) == 1
    assert len(fake.edits) == 2
    apprise = AppriseTarget(fake.json_url()).id
    assert outbox(app)[1]["target_results"][apprise] == SKIPPED


def test_two_incidents_are_two_messages(app: api.Aegis, fake: FakeDiscord) -> None:
    step(app, "escalated")
    step(app, "escalated", thread="incident:test-host:db:4")
    step(app, "recovered")
    drain(sender(app, [DiscordTarget(fake.webhook_url())], instance="threads", seed=3),
          now_of(app))
    assert len(fake.received) == 2
    assert [body["embeds"][0]["title"] for _, body in fake.edits] == [
        "web recovered on test-host"]
    assert len(kept(app)) == 2
