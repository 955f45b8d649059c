"""Test jobs for deadlines under a real daemon:

- ``overruns``: every minute; runs AEGIS_TEST_OVERRUN_S seconds (default 0) against a
  max_runtime of half a second.
- ``flaky``: every second, expected to succeed every 2 seconds; it fails while the file
  named by AEGIS_TEST_FLAKY_FILE exists.
"""

import os
import time
from pathlib import Path

from aegis.scheduling import triggers
from aegis.scheduling.registry import JobContext, Registry


def overruns(ctx: JobContext) -> dict[str, float]:
    seconds = float(os.environ.get("AEGIS_TEST_OVERRUN_S", "0"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled.is_set():
        time.sleep(0.05)
    return {"ran_s": seconds}


def flaky(ctx: JobContext) -> None:
    flag = os.environ.get("AEGIS_TEST_FLAKY_FILE")
    if flag and Path(flag).exists():
        raise RuntimeError("told to fail")


def register(registry: Registry) -> None:
    registry.add("overruns", overruns, triggers.every(minutes=1), max_runtime_s=0.5,
                 timeout_s=60)
    registry.add("flaky", flaky, triggers.every(seconds=1), expect_every_s=2)
