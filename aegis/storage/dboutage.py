"""The database unreachable: one message, sent without it, edited to resolved once it is
back.

While PostgreSQL does not answer, nothing aegis records reaches the outbox, so the person
who should fix the database would hear nothing of it. After AEGIS_DB_OUTAGE_ALERT_AFTER
the daemon posts ``aegis on web-01 cannot reach its database since 09:41:05 UTC``
straight to the alerts channel's destinations (aegis/notify/offline.py watches and
sends). The outage is kept where it survives a restart without the database: as
``database_outage`` records in the spool file, one when it begins and one when its
message is out, so a daemon killed and restarted mid-outage neither forgets when it began
nor posts it twice. When the database answers, the spool's replay writes the outage back
(``replay_outage``): one ``database_outage`` event, the message as delivered (its thread
holding the posted message) and its resolved version, which the sender edits into it.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from aegis.core.clock import utcnow
from aegis.storage.db import Queries
from aegis.storage.events import EventType, Importance, make_event
from aegis.storage.outbox import Channel, IncidentStep, Notification, SentOffline, enqueue
from aegis.storage.spool import Spool
from aegis.storage.store import Replay, insert_event

SPOOL_KIND = "database_outage"
SOURCE = "aegis"


@dataclass(frozen=True)
class DatabaseOutage:
    """This host's database not answering since ``since``."""

    host: str
    since: datetime
    error: str = ""
    # The uid of the event that records it once the database is back.
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    # It lasted past AEGIS_DB_OUTAGE_ALERT_AFTER: its message is due (sent, when ``sent``).
    alerted: bool = False
    sent: SentOffline | None = None

    @property
    def thread(self) -> str:
        """Its living message."""
        return f"database:{self.host}:{self.since.isoformat()}"

    def due(self, now: datetime, alert_after_s: float) -> bool:
        """Whether its message should go out now: past the alert delay, not sent yet."""
        return self.sent is None and (now - self.since).total_seconds() >= alert_after_s

    def to_record(self) -> dict[str, Any]:
        """As a spool record."""
        return {"kind": SPOOL_KIND, "host": self.host, "since": self.since.isoformat(),
                "error": self.error, "uid": self.uid, "alerted": self.alerted,
                "sent": None if self.sent is None else asdict(self.sent)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DatabaseOutage:
        """From its spool record (KeyError, TypeError or ValueError: not one)."""
        sent = record.get("sent")
        return cls(host=str(record["host"]), since=datetime.fromisoformat(record["since"]),
                   error=str(record.get("error") or ""), uid=str(record["uid"]),
                   alerted=bool(record.get("alerted")),
                   sent=SentOffline(**sent) if isinstance(sent, dict) else None)

    def with_message(self, sent: SentOffline | None) -> DatabaseOutage:
        """Its message is due, and went out as ``sent`` says (None: no destination took
        it yet)."""
        return replace(self, alerted=True, sent=sent)


def open_outage(spool: Spool, host: str) -> DatabaseOutage | None:
    """The outage of ``host`` the spool still holds (a daemon killed during it left it
    there), as last written; None when there is none."""
    found = None
    for record in spool.records(SPOOL_KIND):
        try:
            outage = DatabaseOutage.from_record(record)
        except (KeyError, TypeError, ValueError):
            continue
        if outage.host == host:
            found = outage
    return found


def outage_message(outage: DatabaseOutage) -> Notification:
    """The message that says the database does not answer (Apprise gets it too)."""
    error = f": {outage.error}" if outage.error else ""
    host = outage.host
    return Notification(
        channel=Channel.ALERTS,
        title=f"aegis on {host} cannot reach its database since {outage.since:%H:%M:%S} UTC",
        body=(f"**Unreachable**: PostgreSQL has not answered aegis on {host} since "
              f"{outage.since:%H:%M:%S} UTC{error}.\n\naegis goes on healing and keeps what "
              "it does in its spool file; escalations are sent straight to this channel "
              "meanwhile. This message says when the database answers again."),
        importance=Importance.CRITICAL, fields={"host": host},
        dedup_key=f"database_outage:{host}:{outage.since.isoformat()}", groupable=False,
        thread=outage.thread, state=IncidentStep.ESCALATED)


def resolved_message(outage: DatabaseOutage, now: datetime) -> Notification:
    """The same message, resolved: the database answers again (an edit of it where the
    destination edits)."""
    minutes = (now - outage.since).total_seconds() / 60
    host = outage.host
    return Notification(
        channel=Channel.ALERTS, title=f"aegis on {host} reaches its database again",
        body=(f"**Resolved** after {minutes:.0f} min: PostgreSQL did not answer aegis on "
              f"{host} from {outage.since:%H:%M:%S} to {now:%H:%M:%S} UTC; what aegis did "
              "meanwhile is written back."),
        importance=Importance.MEDIUM, fields={"host": host},
        dedup_key=f"database_outage:{host}:{outage.since.isoformat()}:resolved",
        groupable=False, thread=outage.thread, state=IncidentStep.RECOVERED)


def replay_outage(clock: Any = utcnow) -> Replay:
    """The replay of a ``database_outage`` record, as the database answers again: nothing
    for an outage shorter than the alert delay; else its event (once, by uid) and, when
    its message went out, the message as delivered and its resolved version."""

    def replay(tx: Queries, record: dict[str, Any]) -> None:
        outage = DatabaseOutage.from_record(record)
        if not outage.alerted:
            return
        now = clock()
        minutes = (now - outage.since).total_seconds() / 60
        event = replace(make_event(
            EventType.DATABASE_OUTAGE,
            f"the database did not answer from {outage.since:%H:%M:%S} to {now:%H:%M:%S} UTC "
            f"({minutes:.0f} min)", importance=Importance.HIGH, host=outage.host,
            source=SOURCE, timestamp=outage.since,
            details={"host": outage.host, "since": outage.since.isoformat(),
                     "until": now.isoformat(), "error": outage.error,
                     "message_sent": outage.sent is not None}), uid=outage.uid)
        insert_event(tx, event)
        if outage.sent is not None:  # each once, by its dedup key
            sent = replace(outage_message(outage), sent=outage.sent)
            enqueue(tx, sent, host=outage.host, event_uid=outage.uid)
            enqueue(tx, resolved_message(outage, now), host=outage.host, event_uid=outage.uid)

    return replay
