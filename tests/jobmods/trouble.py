"""Test jobs that misbehave: one always fails, one hangs past its timeout, one overlaps
its own next slot."""

import time

from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry


def flaky(ctx: JobContext) -> None:
    raise RuntimeError("flaky job failed on purpose")


def hang(ctx: JobContext) -> None:
    time.sleep(3)  # ignores ctx.cancelled on purpose: the timeout must not wait for it


def slowpoke(ctx: JobContext) -> None:
    time.sleep(1.5)


def register(registry: Registry) -> None:
    registry.add("flaky", flaky, triggers.every(seconds=1))
    registry.add("hang", hang, triggers.every(seconds=2), timeout_s=1)
    registry.add("slowpoke", slowpoke, triggers.every(seconds=1))
