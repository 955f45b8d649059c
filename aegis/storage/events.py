"""Events of the episodic history: what one is and how it is validated. Recording them is
the store's (aegis/storage/store.py)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from aegis.core.errors import UsageError
from aegis.core.jsonable import json_safe, to_json
from aegis.storage.db import Json, Row

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_SUMMARY_CHARS = 4000


class Importance(StrEnum):
    """How much an event matters, lowest first (PostgreSQL's ``importance`` type)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Event:
    event_type: str
    summary: str
    importance: str
    host: str
    source: str
    timestamp: datetime
    details: dict[str, Any] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return to_json(self, only=("timestamp", "event_type", "summary", "importance", "host",
                                   "source", "details"))

    def params(self) -> dict[str, Any]:
        return {"uid": self.uid, "timestamp": self.timestamp, "event_type": self.event_type,
                "summary": self.summary, "details": Json(self.details),
                "importance": self.importance, "host": self.host, "source": self.source}

    @classmethod
    def from_row(cls, row: Row) -> Event:
        return cls(event_type=row["event_type"], summary=row["summary"],
                   importance=row["importance"], host=row["host"], source=row["source"],
                   timestamp=row["timestamp"], details=row["details"] or {},
                   uid=str(row["uid"]), id=row["id"])


def validate_importance(importance: str) -> Importance:
    try:
        return Importance(importance)
    except ValueError:
        raise UsageError(f"importance {importance!r} is not one of "
                         f"{', '.join(Importance)}") from None


def make_event(event_type: str, summary: str, *, importance: str, host: str, source: str,
               details: dict[str, Any] | None, timestamp: datetime) -> Event:
    """A validated event with JSON-safe details."""
    if not _EVENT_TYPE.match(event_type):
        raise UsageError(f"event type {event_type!r} is not snake_case (a-z, 0-9, _)")
    level = validate_importance(importance)
    if len(summary) > MAX_SUMMARY_CHARS:
        summary = summary[: MAX_SUMMARY_CHARS - 1] + "…"
    return Event(event_type=event_type, summary=summary, importance=level.value, host=host,
                 source=source, timestamp=timestamp, details=json_safe(details or {}))
