"""A daemon killed with -9 while it retries loses nothing: the next daemon posts every
message exactly once, in order."""

from __future__ import annotations

import signal

from aegis import api
from aegis.storage.outbox import Channel, Notification
from tests.support.daemons import Spawner, daemon_env
from tests.support.discord import FakeDiscord
from tests.support.rows import sql_rows
from tests.support.waiting import wait_for


def test_kill_9_during_retries_loses_and_repeats_nothing(
        app: api.Aegis, aegis_env: dict[str, str], fake: FakeDiscord, spawn: Spawner) -> None:
    expected = [f"digest {i}" for i in range(6)]
    for title in expected:
        app.store.record_event("test_message", title,
                               notify=Notification(Channel.JOURNAL, title, body="queued"))
    env = daemon_env(aegis_env, DISCORD_JOURNAL_WEBHOOK_URL=fake.webhook_url())
    fake.script(*["500"] * 3)
    first = spawn(env)
    url = app.db.dsn
    wait_for(lambda: sql_rows(url, "SELECT 1 FROM outbox WHERE attempts >= 2"), 60,
             "the first daemon to retry")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert fake.received == []
    spawn(env)
    wait_for(lambda: not sql_rows(url, "SELECT 1 FROM outbox WHERE status <> 'delivered' "
                                       "AND title LIKE 'digest %%'"),
             90, "every message delivered")
    posted = [p["embeds"][0]["title"] for p in fake.received]
    # the test job module's own messages come after ours on the same channel
    assert [t for t in posted if t.startswith("digest ")] == expected
    assert posted[: len(expected)] == expected
    assert fake.answers.count(500) == 3
