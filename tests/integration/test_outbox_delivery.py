"""The outbox sender against a local server that behaves like Discord's webhook endpoint
(and a JSON endpoint for Apprise): order, exactly once, retries, give-up, grouping."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from aegis import api
from aegis.core.config import Settings
from aegis.notify.apprise import AppriseTarget
from aegis.notify.discord import DiscordTarget
from aegis.notify.sender import Sender, deliver_pending, run_sender
from aegis.notify.targets import Target
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, Notification
from tests.support.discord import TOKEN, FakeDiscord, mentions_would_ping
from tests.support.outbox import drain, outbox, sender
from tests.support.rows import sql_rows


def discord(fake: FakeDiscord, timeout_s: float = 2.0, token: str | None = None) -> Target:
    return DiscordTarget(fake.webhook_url(token), timeout_s=timeout_s)


def queue(app: api.Aegis, title: str, channel: str = "journal", importance: str = "medium",
          body: str = "", **notification: Any) -> None:
    app.store.record_event("test_message", title, importance=importance,
                           notify=Notification(Channel(channel), title, body=body,
                                               importance=Importance(importance),
                                               **notification))


def titles(fake: FakeDiscord) -> list[str]:
    return [payload["embeds"][0]["title"] for payload in fake.received]


def created(app: api.Aegis) -> datetime:
    first: datetime = outbox(app)[0]["created_at"]
    return first


def test_every_message_once_and_in_order_through_429_500_and_slow_replies(
        app: api.Aegis, fake: FakeDiscord) -> None:
    expected = [f"message {i:02d}" for i in range(12)]
    for title in expected:
        queue(app, title)
    fake.script("429:0.5", "500", "ok", "slow:0.3", "500", "500", "ok", "429:2", "ok", "500")
    s = sender(app, alerts=[], journal=[discord(fake)])
    drain(s, created(app))
    assert titles(fake) == expected
    assert fake.rejected == []
    assert {row["status"] for row in outbox(app)} == {"delivered"}
    assert 429 in fake.answers
    assert 500 in fake.answers


def test_429_waits_for_retry_after_and_5xx_backs_off(app: api.Aegis,
                                                     fake: FakeDiscord) -> None:
    queue(app, "rate limited")
    fake.script("429:30", "500", "500")
    s = sender(app, alerts=[], journal=[discord(fake)])
    t0 = created(app)
    s.deliver(t0)
    row = outbox(app)[0]
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert row["next_attempt_at"] == t0 + timedelta(seconds=30.05)
    assert "429" in str(row["last_error"])
    s.deliver(t0 + timedelta(seconds=29))
    assert fake.answers == [429]  # nothing posted before retry_after
    s.deliver(t0 + timedelta(seconds=31))
    first_backoff = outbox(app)[0]["next_attempt_at"] - (t0 + timedelta(seconds=31))
    s.deliver(t0 + timedelta(seconds=31) + first_backoff)
    row = outbox(app)[0]
    assert row["attempts"] == 3
    assert "HTTP 500" in str(row["last_error"])
    assert timedelta(seconds=5) <= first_backoff <= timedelta(seconds=10)  # 2nd attempt
    drain(s, t0 + timedelta(seconds=120))
    assert titles(fake) == ["rate limited"]


def test_permanent_4xx_is_recorded_with_its_reason_and_the_channel_moves_on(
        app: api.Aegis, fake: FakeDiscord) -> None:
    queue(app, "to a deleted webhook")
    queue(app, "next one")
    s = sender(app, alerts=[], journal=[discord(fake, token="wrong-token-123456789")])
    counts = s.deliver(created(app) + timedelta(seconds=1))
    rows = outbox(app)
    assert counts.failed == 2
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert "HTTP 401: Invalid Webhook Token (code 50027)" in str(rows[0]["last_error"])
    assert "wrong-token" not in str(rows[0]["last_error"])
    assert rows[0]["attempts"] == 1


def test_unknown_webhook_404_is_permanent(app: api.Aegis, fake: FakeDiscord) -> None:
    queue(app, "gone")
    fake.script("404")
    sender(app, alerts=[], journal=[discord(fake)]).deliver(created(app))
    row = outbox(app)[0]
    assert row["status"] == "failed"
    assert "HTTP 404: Unknown Webhook" in str(row["last_error"])


def test_timeouts_are_retried_and_delivered_later(app: api.Aegis, fake: FakeDiscord) -> None:
    queue(app, "slow server")
    fake.script("drop:1.0")
    s = sender(app, alerts=[], journal=[discord(fake, timeout_s=0.3)])
    s.deliver(created(app))
    row = outbox(app)[0]
    assert row["status"] == "pending"
    assert "no answer within 0.3s" in str(row["last_error"])
    drain(s, created(app) + timedelta(seconds=60))
    assert titles(fake) == ["slow server"]


def test_connection_refused_is_retried_without_leaking_the_token(app: api.Aegis) -> None:
    queue(app, "nobody listening")
    target = DiscordTarget(f"http://127.0.0.1:9/api/webhooks/1/{TOKEN}", timeout_s=1)
    sender(app, alerts=[], journal=[target]).deliver(created(app))
    row = outbox(app)[0]
    assert row["status"] == "pending"
    assert str(row["last_error"]).startswith("discord http://127.0.0.1:9/***: connection failed")
    assert TOKEN not in str(row["last_error"])


def test_gives_up_after_the_maximum_age_with_a_critical_event(
        settings: Settings, fake: FakeDiscord) -> None:
    with api.connect(replace(settings, outbox_max_age_s=60), migrate=False) as app:
        queue(app, "never accepted")
        fake.script(*["500"] * 10)
        s = sender(app, alerts=[discord(fake)], journal=[discord(fake)])
        t0 = created(app)
        s.deliver(t0)
        s.deliver(t0 + timedelta(seconds=61))
        row = outbox(app)[0]
        assert row["status"] == "failed"
        assert str(row["last_error"]).startswith("gave up after 1 attempt(s): discord")
        events = sql_rows(app.db.dsn, "SELECT importance::text, details FROM episodic_memory "
                                      "WHERE event_type = 'notification_given_up'")
        assert len(events) == 1
        assert events[0]["importance"] == "critical"
        assert events[0]["details"]["outbox_ids"] == [row["id"]]
        # a journal message given up is announced on the alerts channel
        alert = [r for r in outbox(app) if r["channel"] == "alerts"]
        assert len(alert) == 1
        assert alert[0]["importance"] == "critical"


def test_without_a_channel_messages_are_undeliverable_and_recorded_once(
        app: api.Aegis) -> None:
    s = sender(app, alerts=[], journal=[])
    queue(app, "first")
    queue(app, "second", channel="alerts")
    s.deliver()
    queue(app, "third")
    s.deliver()
    assert {r["status"] for r in outbox(app)} == {"undeliverable"}
    assert "set DISCORD_JOURNAL_WEBHOOK_URL" in str(outbox(app)[0]["last_error"])
    events = sql_rows(app.db.dsn, "SELECT details->>'channel' AS channel FROM episodic_memory "
                                  "WHERE event_type = 'notifications_undeliverable'")
    assert sorted(e["channel"] for e in events) == ["alerts", "journal"]


def test_a_burst_of_alerts_becomes_one_post_listing_them(app: api.Aegis,
                                                         fake: FakeDiscord) -> None:
    for i in range(8):
        queue(app, f"container web-{i} escalated", channel="alerts", importance="high",
              dedup_key=f"escalation:test-host:web-{i}:1")
    s = sender(app, alerts=[discord(fake)])
    t0 = created(app)
    assert s.deliver(t0 + timedelta(seconds=1), flush=False).posts == 0  # group wait
    s.deliver(t0 + timedelta(seconds=6), flush=False)
    assert len(fake.received) == 1
    embed = fake.received[0]["embeds"][0]
    assert embed["title"] == "8 alerts from test-host"
    assert all(f"web-{i} escalated" in embed["description"] for i in range(8))
    rows = outbox(app)
    assert {r["status"] for r in rows} == {"delivered"}
    assert [r["merged_into"] for r in rows[1:]] == [rows[0]["id"]] * 7


def test_one_escalation_per_container_per_incident(app: api.Aegis, fake: FakeDiscord) -> None:
    for _ in range(3):
        queue(app, "web escalated", channel="alerts", importance="critical",
              dedup_key="escalation:test-host:web:7")
    deliver_pending_with(app, fake)
    assert len(outbox(app)) == 1
    assert titles(fake) == ["web escalated"]


def deliver_pending_with(app: api.Aegis, fake: FakeDiscord) -> None:
    sender(app, alerts=[discord(fake)], journal=[discord(fake)]).deliver()


def test_identical_critical_alerts_are_summarised_not_repeated(app: api.Aegis,
                                                               fake: FakeDiscord) -> None:
    s = sender(app, alerts=[discord(fake)])
    queue(app, "database unreachable", channel="alerts", importance="critical", body="timeout")
    t0 = created(app)
    s.deliver(t0 + timedelta(seconds=10))
    for minutes in (5, 10):
        queue(app, "database unreachable", channel="alerts", importance="critical",
              body="timeout")
        s.deliver(t0 + timedelta(minutes=minutes))
    assert len(fake.received) == 1
    queue(app, "database unreachable", channel="alerts", importance="critical", body="timeout")
    s.deliver(t0 + timedelta(hours=2))
    assert len(fake.received) == 2
    repeated = {f["name"]: f["value"] for f in fake.received[1]["embeds"][0]["fields"]}
    assert repeated["repeated"].startswith("2 more time(s) since")
    rows = outbox(app)
    assert [r["merged_into"] for r in rows] == [None, rows[0]["id"], rows[0]["id"], None]


def test_two_senders_never_post_the_same_row_and_keep_the_order(
        app: api.Aegis, fake: FakeDiscord) -> None:
    expected = [f"row {i:02d}" for i in range(30)]
    for title in expected:
        queue(app, title)
    fake.script(*["slow:0.02"] * 30)
    senders = [sender(app, alerts=[], journal=[discord(fake)], instance=f"sender-{n}")
               for n in range(2)]

    def work(s: Sender) -> None:
        for _ in range(400):
            s.deliver()
            if not sql_rows(app.db.dsn, "SELECT 1 FROM outbox WHERE status = 'pending'"):
                return

    threads = [threading.Thread(target=work, args=(s,)) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert titles(fake) == expected
    sent_by = {r["sent_by"] for r in outbox(app)}
    assert sent_by <= {"sender-0", "sender-1"}


def test_payloads_ping_nobody_and_are_never_refused(app: api.Aegis, fake: FakeDiscord) -> None:
    queue(app, "@everyone " + "x" * 400, channel="alerts", importance="critical",
          body="@here <@&123> " + "probe output\n" * 2000,
          fields={f"@everyone field {i}": "y" * 3000 for i in range(40)},
          dedup_key="escalation:test-host:@everyone:1")
    deliver_pending_with(app, fake)
    assert fake.rejected == []
    assert len(fake.received) == 1
    assert not mentions_would_ping(fake.received[0])


def test_an_apprise_json_url_receives_the_message(app: api.Aegis, fake: FakeDiscord) -> None:
    queue(app, "via apprise", body="hello from aegis")
    s = sender(app, alerts=[], journal=[AppriseTarget(fake.json_url("journal"))])
    assert s.deliver().delivered == 1
    assert len(fake.json_received) == 1
    received = fake.json_received[0]
    assert received["title"] == "via apprise"
    assert "hello from aegis" in received["message"]
    assert "aegis on test-host" in received["message"]


def test_one_target_failing_does_not_repost_to_the_others(app: api.Aegis,
                                                         fake: FakeDiscord) -> None:
    queue(app, "two destinations")
    broken = FakeDiscord()
    try:
        broken.script("500")
        s = sender(app, alerts=[], journal=[discord(fake), discord(broken)])
        drain(s, created(app))
    finally:
        broken.close()
    assert titles(fake) == ["two destinations"]
    assert titles(broken) == ["two destinations"]
    assert outbox(app)[0]["attempts"] == 2


def test_deliver_pending_uses_the_configured_channels(settings: Settings,
                                                      fake: FakeDiscord) -> None:
    configured = replace(settings, discord_journal_webhook_url=fake.webhook_url())
    with api.connect(configured, migrate=False) as app:
        queue(app, "configured journal")
        counts = deliver_pending(app)
    assert counts["delivered"] == 1
    assert counts["posts"] == 1
    assert titles(fake) == ["configured journal"]
    footer = fake.received[0]["embeds"][0]["footer"]["text"]
    assert footer.startswith("aegis on test-host · sent by test-host-")


def test_the_service_wakes_when_a_message_is_queued(settings: Settings,
                                                    fake: FakeDiscord) -> None:
    configured = replace(settings, discord_journal_webhook_url=fake.webhook_url())
    stop = threading.Event()
    with api.connect(configured, migrate=False) as app:
        thread = threading.Thread(target=run_sender, args=(app, stop))
        thread.start()
        try:
            # idle, the service would poll again only after 30 s: the insert trigger wakes it
            threading.Event().wait(1.5)
            queue(app, "wake up")
            deadline = 100
            while not fake.received and deadline:
                threading.Event().wait(0.1)
                deadline -= 1
        finally:
            stop.set()
            thread.join(15)
    assert titles(fake) == ["wake up"]
    assert not thread.is_alive()


def test_the_service_survives_an_unreachable_database(settings: Settings) -> None:
    unreachable = replace(settings, database_url="postgresql://aegis@127.0.0.1:9/aegis",
                          discord_journal_webhook_url="http://127.0.0.1:9/api/webhooks/1/x")
    stop = threading.Event()
    with api.connect(unreachable, migrate=False) as app:
        thread = threading.Thread(target=run_sender, args=(app, stop))
        thread.start()
        threading.Event().wait(2.0)
        assert thread.is_alive()
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
