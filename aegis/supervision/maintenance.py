"""The maintenance windows under way on one host, as the supervisor meets them: which
containers each covered and what it held back (a container seen unhealthy or down, which
outside a window would have been struck), and, once it is over, the one low-importance
``maintenance_window_ended`` event that says so. Nothing held is ever sent afterwards:
at a window's end each container it covered is judged afresh from its state then (its
row's timer falls due at the end), as if it had just been seen."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from aegis.storage.events import EventType, Importance
from aegis.storage.runtime import Runtime
from aegis.supervision.docker import Sighting
from aegis.supervision.protocol.windows import Span, Window
from aegis.supervision.records import SOURCE


@dataclass
class Occurrence:
    """One occurrence of a window on this host: the containers it covered and, for each
    it held back, what was seen (``unhealthy``, ``exited``...)."""

    window: Window
    span: Span
    covered: set[str] = field(default_factory=set)
    held: dict[str, set[str]] = field(default_factory=dict)


def held_state(seen: Sighting) -> str | None:
    """What a window holds back of ``seen``: unhealthy, or not running; None when healthy."""
    if seen.status != "running":
        return seen.status
    return "unhealthy" if seen.health == "unhealthy" else None


class MaintenanceLog:
    """The occurrences under way, shared by the supervisors of one supervision (the
    watcher's threads and the sweep's): kept in memory, so a daemon restarted during a
    window reports what it saw since."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, datetime], Occurrence] = {}

    def note(self, window: Window, span: Span, seen: Sighting) -> None:
        """``seen`` was judged inside ``window``'s occurrence ``span``."""
        held = held_state(seen)
        with self._lock:
            occurrence = self._open.setdefault((window.name, span.start),
                                               Occurrence(window, span))
            occurrence.span = Span(span.start, max(span.end, occurrence.span.end))
            occurrence.covered.add(seen.name)
            if held is not None:
                occurrence.held.setdefault(seen.name, set()).add(held)

    def ended(self, now: datetime) -> list[Occurrence]:
        """The occurrences over at ``now``, each handed out once."""
        with self._lock:
            over = [key for key, found in self._open.items() if found.span.end <= now]
            return [self._open.pop(key) for key in over]


def report_ended(runtime: Runtime, log: MaintenanceLog, now: datetime) -> int:
    """One ``maintenance_window_ended`` event per occurrence over at ``now`` (spooled
    while the database is down); returns how many."""
    ended = log.ended(now)
    for occurrence in ended:
        runtime.store.record_event(
            EventType.MAINTENANCE_WINDOW_ENDED, _summary(occurrence),
            importance=Importance.LOW, source=SOURCE, timestamp=now,
            details={"host": runtime.settings.host, "window": occurrence.window.name,
                     "schedule": occurrence.window.describe(),
                     "start": occurrence.span.start.isoformat(),
                     "end": occurrence.span.end.isoformat(),
                     "containers": sorted(occurrence.covered),
                     "held": {name: sorted(seen) for name, seen
                              in sorted(occurrence.held.items())}})
    return len(ended)


def _summary(occurrence: Occurrence) -> str:
    covered = len(occurrence.covered)
    text = (f"maintenance window {occurrence.window.name} ended: {covered} container"
            f"{'' if covered == 1 else 's'} covered")
    if not occurrence.held:
        return text + ", nothing held back"
    names = ", ".join(f"{name} ({'/'.join(sorted(seen))})"
                      for name, seen in sorted(occurrence.held.items()))
    return (text + f"; held back: {names}. Nothing is replayed: each is judged afresh "
            "from its state now")
