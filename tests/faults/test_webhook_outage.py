"""The webhook endpoint failing while messages keep being queued: afterwards every message
is delivered once, in order.

- In process, on an injected clock: at least six simulated minutes of 500, then 429, then
  no answer, then connection refused, each phase lasting until the sender really met
  that failure, in seconds of real time.
- A real ``aegis run`` posting to the local Discord-like server while it is down
  (connection refused), answers 500, answers 429 with ``retry_after`` and leaves a post
  unanswered past the sender's timeout, within about a minute of real time.
"""

from __future__ import annotations

import random
import signal
import time
from datetime import timedelta
from typing import Any

from aegis import api
from aegis.notify.discord import POST_TIMEOUT_S, DiscordTarget
from aegis.notify.sender import Sender
from aegis.storage.outbox import Channel, Notification
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.discord import TOKEN, WEBHOOK_ID, FakeDiscord
from tests.support.ports import free_port
from tests.support.rows import sql_rows
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

STEP_S = 10  # a message is queued, and the sender runs, every 10 simulated seconds
PHASE_S = 90  # each failure lasts at least this long, and until the sender met it
# the failure, and what the sender records for it
PHASES = (("500", "HTTP 500: Internal Server Error"),
          ("429:20", "HTTP 429 rate limited, retry after 20s"),
          ("drop:0.5", "no answer within 0.3s"),
          ("refused", "connection failed: "))


def head_attempt(dsn: str) -> tuple[int, str] | None:
    """The attempts and last error of the oldest undelivered message."""
    head = sql_rows(dsn, "SELECT attempts, last_error FROM outbox WHERE status <> "
                         "'delivered' ORDER BY id LIMIT 1")
    return (head[0]["attempts"], head[0]["last_error"] or "") if head else None


def test_minutes_of_failing_webhook_then_every_message_once_in_order(
        app: api.Aegis, fake: FakeDiscord) -> None:
    working = DiscordTarget(fake.webhook_url(), timeout_s=0.3)
    refused = DiscordTarget(f"http://127.0.0.1:9/api/webhooks/1/{TOKEN}", timeout_s=0.3)
    sender = Sender(app, targets={Channel.ALERTS: [], Channel.JOURNAL: [working]},
                    instance="outage", rng=random.Random(3))
    start = now = app.db.server_info().db_clock
    expected: list[str] = []
    met: dict[str, list[str]] = {}  # failure -> the error of each attempt made meanwhile
    attempts = 0
    for failure, _ in PHASES:
        fake.steps.clear()
        if failure == "refused":
            sender.targets[Channel.JOURNAL] = [refused]
        else:
            fake.script(*[failure] * 500)
        phase_end = now + timedelta(seconds=PHASE_S)
        met[failure] = []
        while now < phase_end or not met[failure]:
            title = f"message {len(expected):04d}"
            expected.append(title)
            app.store.record_event("test_message", title, timestamp=now,
                                   notify=Notification(Channel.JOURNAL, title))
            sender.deliver(now)
            head = head_attempt(app.db.dsn)
            assert head is not None, "a message got through while the endpoint fails"
            if head[0] > attempts:
                attempts = head[0]
                met[failure].append(head[1])
            now += timedelta(seconds=STEP_S)
            assert len(expected) < 1000, f"the sender never met {failure}: {met}"
    assert fake.received == [], "nothing may get through while the endpoint fails"
    for failure, error in PHASES:
        assert met[failure], f"no attempt met {failure}"
        assert all(error in seen for seen in met[failure]), (failure, met[failure])
    assert 500 in fake.answers
    assert 429 in fake.answers
    wait_for(lambda: fake.dropped == len(met["drop:0.5"]), timeout_s=10,
             what="every unanswered post counted by the server")

    fake.steps.clear()
    sender.targets[Channel.JOURNAL] = [working]
    for _ in range(200):
        sender.deliver(now)
        if not sql_rows(app.db.dsn, "SELECT 1 FROM outbox WHERE status <> 'delivered'"):
            break
        now += timedelta(seconds=30)

    assert [p["embeds"][0]["title"] for p in fake.received] == expected
    outbox = sql_rows(app.db.dsn, "SELECT status, attempts, last_error FROM outbox")
    assert {r["status"] for r in outbox} == {"delivered"}
    assert max(r["attempts"] for r in outbox) == attempts + 1
    assert all(TOKEN not in str(r["last_error"]) for r in outbox)
    assert now - start > timedelta(minutes=6)


# --- a real daemon ---


def test_a_real_daemon_delivers_every_message_once_in_order_through_an_outage(
        app: api.Aegis, aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    port = free_port()  # nothing listens there yet: connection refused
    webhook = f"http://127.0.0.1:{port}/api/webhooks/{WEBHOOK_ID}/{TOKEN}"
    process = spawn(daemon_env(aegis_env, AEGIS_JOB_MODULES="tests.jobmods.tick",
                               DISCORD_JOURNAL_WEBHOOK_URL=webhook))
    wait_for(daemon_running(url), what="the daemon")
    titles: list[str] = []
    last_queued = [0.0]

    def queue(count: int = 1) -> None:
        for _ in range(count):
            titles.append(f"outage {len(titles):02d}")
            app.store.record_event("test_message", titles[-1],
                                   notify=Notification(Channel.JOURNAL, titles[-1]))
        last_queued[0] = time.monotonic()

    def row(index: int) -> dict[str, Any]:
        return rows(url, "SELECT status, attempts, last_error FROM outbox "
                         "ORDER BY id OFFSET %s LIMIT 1", index)[0]

    def met(index: int, error: str) -> bool:
        if time.monotonic() - last_queued[0] >= 1:
            queue()  # a message a second all along
        return error in (row(index)["last_error"] or "")

    queue(3)
    wait_for(lambda: met(0, "connection failed: "), what="a refused connection recorded")
    # The first message meets the refusal, then a 500; the second a 429, then a post left
    # unanswered past the timeout (each message's back-off starts again, so the outage
    # stays within a minute).
    fake = FakeDiscord(port=port)
    try:
        fake.script("500", "ok", "429:2", f"drop:{POST_TIMEOUT_S + 2:g}")
        wait_for(lambda: met(0, "HTTP 500: Internal Server Error"), what="a 500 recorded")
        wait_for(lambda: met(1, "HTTP 429 rate limited, retry after 2s"),
                 what="a 429 recorded")
        wait_for(lambda: met(1, f"no answer within {POST_TIMEOUT_S:g}s"),
                 timeout_s=2 * POST_TIMEOUT_S + 10, what="a timeout recorded")
        queue(3)
        wait_for(lambda: not rows(url, "SELECT 1 FROM outbox WHERE status <> 'delivered'"),
                 timeout_s=60, what="every message delivered")

        assert [p["embeds"][0]["title"] for p in fake.received] == titles
        assert fake.answers.count(500) == 1
        assert fake.answers.count(429) == 1
        assert fake.dropped == 1
        assert row(0)["attempts"] >= 3  # refused (maybe more than once), 500, delivered
        assert row(1)["attempts"] == 3  # 429, no answer, delivered
        assert {r["status"] for r in rows(url, "SELECT status FROM outbox")} == {"delivered"}
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        fake.close()
