"""Test jobs: a 1-second cluster job that records which host ran which slot, and a job
that sleeps as long as its task argument (or AEGIS_TEST_SLEEP_S) says."""

import os
import time
from datetime import UTC, datetime

from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry


def tick(ctx: JobContext) -> dict[str, str]:
    ctx.app.store.record_event("tick_ran", "tick", source="test",
                               details={"slot": ctx.scheduled_for.isoformat(),
                                        "host": ctx.settings.host, "trigger": ctx.trigger})
    return {"host": ctx.settings.host}


def sleeper(ctx: JobContext) -> dict[str, float]:
    seconds = float(ctx.args.get("seconds", os.environ.get("AEGIS_TEST_SLEEP_S", "30")))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled.is_set():
        time.sleep(0.05)
    return {"slept_s": seconds}


def register(registry: Registry) -> None:
    registry.add("tick", tick, triggers.every(seconds=1), scope="cluster")
    # Runs only when queued: its one slot lies in the past, beyond any grace.
    registry.add("sleeper", sleeper, triggers.once(datetime(2000, 1, 1, tzinfo=UTC)),
                 timeout_s=120)
