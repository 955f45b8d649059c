"""aegis's sender driven in the test process against the outbox of a test's database, on
a clock the test moves: a sender with a fixed random seed (its back-off jitter), the
outbox drained pass after pass, and the outbox as rows."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from aegis import api
from aegis.notify.sender import Sender
from aegis.notify.targets import Target
from aegis.storage.outbox import Channel
from tests.support.rows import sql_rows


def sender(app: api.Aegis, alerts: list[Target], journal: list[Target] | None = None,
           instance: str = "test-sender", seed: int = 7) -> Sender:
    """A sender posting the alerts channel to ``alerts`` and the journal to ``journal``."""
    return Sender(app, targets={Channel.ALERTS: alerts, Channel.JOURNAL: journal or []},
                  instance=instance, rng=random.Random(seed))


def drain(s: Sender, start: datetime, step_s: float = 30.0, passes: int = 200) -> datetime:
    """Deliver pass after pass with a clock that moves ``step_s`` each time, until nothing
    is pending; the clock's time then."""
    now = start
    for _ in range(passes):
        s.deliver(now)
        if not sql_rows(s.db.dsn, "SELECT 1 FROM outbox WHERE status = 'pending'"):
            return now
        now += timedelta(seconds=step_s)
    raise AssertionError("the outbox never drained")


def outbox(app: api.Aegis) -> list[dict[str, Any]]:
    """Every outbox row, oldest first."""
    return sql_rows(app.db.dsn, "SELECT * FROM outbox ORDER BY id")
