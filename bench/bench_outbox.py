"""Outbox delivery throughput: 2,000 queued journal messages posted one by one to a local
Discord-like endpoint (no rate limit, so the sender itself is measured), then 2,000
alerts that the sender groups into posts of up to 20, on a real PostgreSQL.

Goal: at least 50 messages per second posted one by one (Discord itself allows about
5 per 2 s per webhook, so the sender is never the bottleneck).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psycopg

import aegis
from aegis.logs import configure_logging
from aegis.notify import DiscordTarget
from aegis.sender import Sender
from bench.report import Figure, report
from tests.fakes.discord_server import FakeDiscord

MESSAGES = 2_000
GOAL_MESSAGES_PER_S = 50.0


def seed(dsn: str, channel: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO outbox (channel, dedup_key, host, title, body, importance,
                                created_at, next_attempt_at)
            SELECT %(channel)s, %(channel)s || ':' || g, 'bench', 'message ' || g,
                   'a queued message', 'high', now() - interval '1 minute',
                   now() - interval '1 minute'
            FROM generate_series(1, %(n)s) g""", {"channel": channel, "n": MESSAGES})


def timed_pass(app: aegis.Aegis, fake: FakeDiscord, channel: str) -> tuple[float, int, int]:
    target = DiscordTarget(fake.webhook_url())
    sender = Sender(app, targets={"alerts": [target], "journal": [target]}, instance="bench")
    seed(app.db.dsn, channel)
    before = len(fake.received)
    started = time.perf_counter()
    counts = sender.deliver(channels=[channel])
    elapsed_s = time.perf_counter() - started
    if counts.delivered != MESSAGES:
        raise SystemExit(f"{channel}: delivered {counts.delivered} of {MESSAGES}")
    return elapsed_s, counts.delivered, len(fake.received) - before


def main() -> None:
    fake = FakeDiscord()
    try:
        with tempfile.TemporaryDirectory(prefix="aegis-bench-") as home:
            settings = aegis.load_settings({"AEGIS_HOME": str(Path(home)),
                                            "AEGIS_HOST": "bench", "AEGIS_HTTP_ADDR": "off",
                                            "AEGIS_LOG_LEVEL": "error"})
            configure_logging(settings)
            with aegis.connect(settings) as app:
                single_s, single_rows, single_posts = timed_pass(app, fake, "journal")
                group_s, group_rows, group_posts = timed_pass(app, fake, "alerts")
    finally:
        fake.close()
    rate = single_posts / single_s
    grouped_rate = group_rows / group_s
    ok = rate >= GOAL_MESSAGES_PER_S
    print(f"outbox: {single_rows} messages in {single_posts} posts, {single_s:.2f} s, "
          f"{rate:,.0f} messages/s (goal >= {GOAL_MESSAGES_PER_S:.0f}: "
          f"{'ok' if ok else 'MISSED'}); grouped alerts: {group_rows} rows in {group_posts} "
          f"posts, {group_s:.2f} s, {grouped_rate:,.0f} rows/s")
    report("outbox", [
        Figure("outbox delivery throughput", rate, "messages/s",
               f">= {GOAL_MESSAGES_PER_S:.0f}", ok),
        Figure("outbox grouped alerts throughput", grouped_rate, "rows/s")])


if __name__ == "__main__":
    main()
