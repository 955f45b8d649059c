"""A clock the test sets: what aegis's injected ``clock`` callables are handed instead of
``utcnow``, so a test moves time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """Now, as the test set it: ``clock.now = ...`` or ``clock.advance(seconds)``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def t(text: str) -> datetime:
    """``"2026-10-25 01:30"`` as a UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
