"""The webhook endpoint failing for six minutes (500, then 429, then no answer, then
connection refused) while messages keep being queued: afterwards every message is
delivered once, in order. The sender's clock is injected, so six minutes take seconds."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import pytest

from aegis import api
from aegis.notify import DiscordTarget
from aegis.outbox import Notification
from aegis.sender import Sender
from tests.conftest import sql_rows
from tests.fakes.discord_server import TOKEN, FakeDiscord

STEP_S = 10  # a message is queued, and the sender runs, every 10 simulated seconds
PHASES = (("500", 90), ("429:20", 90), ("drop:0.5", 90), ("refused", 90))


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    server = FakeDiscord()
    yield server
    server.close()


def test_six_minutes_of_failing_webhook_then_every_message_once_in_order(
        app: api.Aegis, fake: FakeDiscord) -> None:
    working = DiscordTarget(fake.webhook_url(), timeout_s=0.3)
    refused = DiscordTarget(f"http://127.0.0.1:9/api/webhooks/1/{TOKEN}", timeout_s=0.3)
    sender = Sender(app, targets={"alerts": [], "journal": [working]}, instance="outage",
                    rng=random.Random(3))
    now = app.db.fetch_one("database_now")["now"]  # type: ignore[index]
    expected: list[str] = []
    for failure, seconds in PHASES:
        fake.steps.clear()
        if failure == "refused":
            sender.targets["journal"] = [refused]
        else:
            fake.script(*[failure] * 200)
        for _ in range(seconds // STEP_S):
            title = f"message {len(expected):03d}"
            expected.append(title)
            app.store.record_event("test_message", title, timestamp=now,
                                   notify=Notification("journal", title))
            sender.deliver(now)
            now += timedelta(seconds=STEP_S)
    assert fake.received == [], "nothing may get through while the endpoint fails"
    failing_answers = set(fake.answers)

    fake.steps.clear()
    sender.targets["journal"] = [working]
    for _ in range(200):
        sender.deliver(now)
        if not sql_rows(app.db.dsn, "SELECT 1 FROM outbox WHERE status <> 'delivered'"):
            break
        now += timedelta(seconds=30)

    assert [p["embeds"][0]["title"] for p in fake.received] == expected
    assert failing_answers >= {500, 429}
    rows = sql_rows(app.db.dsn, "SELECT status, attempts, last_error FROM outbox")
    assert {r["status"] for r in rows} == {"delivered"}
    assert max(r["attempts"] for r in rows) > 3
    assert all(TOKEN not in str(r["last_error"]) for r in rows)
    simulated = now - app.db.fetch_one("database_now")["now"]  # type: ignore[index]
    assert simulated > timedelta(minutes=6)
