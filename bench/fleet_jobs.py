"""The fleet benchmark's job: a cluster job every 5 s that records one event per
execution, keyed by its slot, so a slot run twice anywhere in the fleet shows."""

from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry


def fleet_tick(ctx: JobContext) -> None:
    ctx.store.record_event("fleet_tick", "fleet tick", source="bench",
                           details={"slot": ctx.scheduled_for.isoformat()})


def register(registry: Registry) -> None:
    registry.add("fleet_tick", fleet_tick, triggers.every(seconds=5), scope="cluster")
