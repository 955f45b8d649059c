"""Test jobs for the fault tests. Each records one event per execution, keyed by what it
executed (its slot, or its task), so a test can count executions without trusting
``job_runs``:

- ``beat``: host-scoped, every second; its event also queues a journal notification,
  so the outbox gets one message per execution.
- ``pulse``: cluster-scoped, every second.
- ``bump``: runs only when queued; records the task's ``n`` and sleeps ``seconds``,
  holding a database connection all along when the task's ``hold`` is true.
- ``load_1`` to ``load_4``: ``bump`` under four names, for four tasks at once (the runs
  of one job never overlap).
"""

import time
from contextlib import nullcontext
from datetime import UTC, datetime

from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, Notification


def beat(ctx: JobContext) -> dict[str, str]:
    slot = ctx.scheduled_for.isoformat()
    ctx.store.record_event(
        "beat_ran", f"beat {slot}", source="test",
        details={"slot": slot, "run_id": ctx.run_id, "trigger": ctx.trigger},
        notify=Notification(channel=Channel.JOURNAL, title=f"beat {slot}",
                                           importance=Importance.LOW))
    return {"slot": slot}


def pulse(ctx: JobContext) -> None:
    ctx.store.record_event("pulse_ran", "pulse", source="test",
                           details={"slot": ctx.scheduled_for.isoformat(),
                                    "run_id": ctx.run_id})


def bump(ctx: JobContext) -> dict[str, int]:
    n = int(ctx.args.get("n", 0))
    ctx.store.record_event("bump_ran", f"bump {n}", source="test",
                           details={"n": n, "run_id": ctx.run_id})
    deadline = time.monotonic() + float(ctx.args.get("seconds", 0))
    with ctx.app.db.transaction() if ctx.args.get("hold") else nullcontext():
        while time.monotonic() < deadline and not ctx.cancelled.is_set():
            time.sleep(0.05)
    return {"n": n}


def register(registry: Registry) -> None:
    registry.add("beat", beat, triggers.every(seconds=1), scope="host")
    registry.add("pulse", pulse, triggers.every(seconds=1), scope="cluster")
    registry.add("bump", bump, triggers.once(datetime(2000, 1, 1, tzinfo=UTC)), timeout_s=60)
    for n in range(1, 5):
        registry.add(f"load_{n}", bump, triggers.once(datetime(2000, 1, 1, tzinfo=UTC)),
                     timeout_s=60)
