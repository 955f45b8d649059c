"""The Docker engine unreachable: one living message for an outage longer than a strike
interval (``Docker engine on web-01 unreachable since 09:41:05 UTC``), edited to resolved
when the engine answers again; nothing for a blip shorter than that. The outage is kept in
the ``state`` table (``docker_outage:<host>``), so an aegis restarted during it neither
forgets when it began nor posts it twice. ``EngineAvailability``
(aegis/supervision/docker.py) records it; what it says is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aegis.notify.messages import escape_markdown
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, IncidentStep, Notification


@dataclass(frozen=True)
class Outage:
    """The engine not answering since ``since``; ``alerted``: its message is queued."""

    since: datetime
    error: str = ""
    alerted: bool = False

    def thread(self, host: str) -> str:
        """The living message of this outage of ``host``'s engine."""
        return f"docker:{host}:{self.since.isoformat()}"

    def due(self, now: datetime, strike_interval_s: float) -> bool:
        """Whether the outage calls for its message now: longer than a strike interval,
        and not said yet."""
        return not self.alerted and (now - self.since).total_seconds() > strike_interval_s

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "error": self.error, "alerted": self.alerted}

    @classmethod
    def from_json(cls, data: Any) -> Outage | None:
        """The outage kept in the state table (None: none, or not one aegis wrote)."""
        if not isinstance(data, dict) or not isinstance(data.get("since"), str):
            return None
        return cls(since=datetime.fromisoformat(data["since"]),
                   error=str(data.get("error") or ""), alerted=bool(data.get("alerted")))


def outage_message(host: str, outage: Outage) -> Notification:
    """The message that says the engine is unreachable (destinations that cannot edit get
    it too)."""
    error = f": {escape_markdown(outage.error)}" if outage.error else ""
    return Notification(
        channel=Channel.ALERTS,
        title=f"Docker engine on {host} unreachable since {outage.since:%H:%M:%S} UTC",
        body=(f"**Unreachable**: the Docker engine has not answered aegis since "
              f"{outage.since:%H:%M:%S} UTC{error}.\n\nUntil it answers, aegis can neither "
              f"see nor heal the containers of {host}; this message says when it does."),
        importance=Importance.HIGH, fields={"host": host},
        dedup_key=f"docker_outage:{host}:{outage.since.isoformat()}", groupable=False,
        thread=outage.thread(host), state=IncidentStep.ESCALATED)


def resolved_message(host: str, outage: Outage, now: datetime) -> Notification:
    """The same message, resolved: the engine answers again."""
    minutes = (now - outage.since).total_seconds() / 60
    return Notification(
        channel=Channel.ALERTS, title=f"Docker engine on {host} answers again",
        body=(f"**Resolved** after {minutes:.0f} min: the Docker engine on {host} did not "
              f"answer from {outage.since:%H:%M:%S} to {now:%H:%M:%S} UTC."),
        importance=Importance.MEDIUM, fields={"host": host},
        dedup_key=f"docker_outage:{host}:{outage.since.isoformat()}:resolved",
        groupable=False, thread=outage.thread(host), state=IncidentStep.RECOVERED)
