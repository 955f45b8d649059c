"""Jobs for the soak: eight jobs every second, each recording a low event (so the
tables grow and retention has work), one of them a cluster job."""

from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry

JOBS = 8


def soak_tick(ctx: JobContext) -> dict[str, str]:
    ctx.store.record_event("soak_tick", f"{ctx.job_id} ran", source="soak",
                           details={"slot": ctx.scheduled_for.isoformat()})
    return {"slot": ctx.scheduled_for.isoformat()}


def register(registry: Registry) -> None:
    for index in range(JOBS):
        registry.add(f"soak_{index}", soak_tick, triggers.every(seconds=1),
                     scope="cluster" if index == 0 else "host")
