"""Waiting for something a real process, server or engine will do: the tests poll for it
with a bound, never sleep for a guessed time. A bound is generous (a loaded machine must
not fail a test), never a goal: speed goals live in bench/."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout_s: float = 30, what: str = "",
             every_s: float = 0.1) -> T:
    """The first truthy value of ``condition``, asked every ``every_s``; AssertionError
    naming ``what`` once ``timeout_s`` has passed without one."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for "
                                 f"{what or condition}")
        time.sleep(every_s)


def seconds_until(condition: Callable[[], object], timeout_s: float, what: str = "") -> float:
    """How many seconds passed until ``condition`` held (asked every 0.05 s), for a test
    that bounds how soon something happens; AssertionError after ``timeout_s``."""
    start = time.monotonic()
    wait_for(condition, timeout_s, what, every_s=0.05)
    return time.monotonic() - start
