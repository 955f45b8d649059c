"""Outbox delivery throughput: 2,000 journal messages queued with their events, then
delivered by the sender to a local Discord-like endpoint (tests/support/discord.py)
over real HTTP, on a real PostgreSQL (the embedded server).

Goal: at least 50 messages per second, so a backlog after an hour-long webhook outage
(a few hundred messages) clears in seconds; Discord's own rate limit is the real bound.
"""

from __future__ import annotations

import time

from aegis.notify.discord import DiscordTarget
from aegis.notify.sender import Sender
from aegis.storage.outbox import Channel, Notification
from bench.common import bench_app
from bench.report import Figure, report
from tests.support.discord import FakeDiscord

MESSAGES = 2_000
GOAL_PER_S = 50.0


def measure() -> dict[str, float]:
    fake = FakeDiscord()
    try:
        with bench_app() as app:
            for index in range(MESSAGES):
                title = f"message {index}"
                app.store.record_event("bench_message", title,
                                       notify=Notification(Channel.JOURNAL, title))
            sender = Sender(app, targets={Channel.ALERTS: [],
                                          Channel.JOURNAL: [DiscordTarget(fake.webhook_url())]})
            started = time.perf_counter()
            counts = sender.deliver()
            elapsed_s = time.perf_counter() - started
    finally:
        fake.close()
    received = len(fake.received)
    if received != MESSAGES or counts.delivered != MESSAGES:
        raise SystemExit(f"delivered {counts.delivered}, received {received} of {MESSAGES}")
    return {"messages": received, "seconds": elapsed_s, "per_s": received / elapsed_s}


def main() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    result = measure()
    ok = result["per_s"] >= GOAL_PER_S
    print(f"outbox: {result['messages']:.0f} messages delivered in {result['seconds']:.2f} s, "
          f"{result['per_s']:.0f}/s (goal >= {GOAL_PER_S:.0f}/s: {'ok' if ok else 'MISSED'})")
    report("outbox", [Figure("outbox delivery throughput", result["per_s"], "messages/s",
                             f">= {GOAL_PER_S:.0f}/s", ok)])


if __name__ == "__main__":
    main()
