"""The escalation route, and the owner of the ``escalation_pages`` table
(aegis/storage/sql/escalations.sql): an escalated incident nobody acknowledged (``aegis
ack``, the status page) and that did not recover within AEGIS_ESCALATE_AFTER is sent
once to AEGIS_ESCALATION_URLS (the outbox's ``escalation`` channel), and again every
AEGIS_ESCALATION_REPEAT while it stays so.

Delays are rows, not timers: when a page is due is read from the container's row (its
incident's escalation line) and the pages already sent from ``escalation_pages``, so a
daemon killed during the delay leaves nothing the next one, on any host sharing the
database, does not find. A page is counted, recorded (``escalation_paged``) and queued
in one transaction holding the container's row: an acknowledgement or a recovery comes
either before it (then nothing is due) or after it (then the page was due first). Two
daemons never send the same page: the count is a guarded upsert, and the outbox's
dedup key is the page's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from aegis.core.clock import utcnow
from aegis.core.config import Settings
from aegis.core.durations import format_duration_s
from aegis.core.errors import DatabaseUnavailable
from aegis.core.logs import get_logger
from aegis.storage.db import Queries
from aegis.storage.events import Event, EventType, Importance, make_event
from aegis.storage.outbox import Channel, IncidentStep, Notification
from aegis.storage.rows import PrunedBatch, as_rows
from aegis.storage.runtime import Runtime
from aegis.storage.store import insert_event
from aegis.supervision.incidents import Incident, message_body, message_fields
from aegis.supervision.repository import Containers

# Pages counted and queued per transaction.
PAGES_PER_TRANSACTION = 20
# The longest sleep between two looks (an escalation another daemon recorded is found
# within it).
POLL_S = 5.0
DB_RETRY_S = 5.0


@dataclass(frozen=True)
class DuePage:
    """An escalated incident whose next page is due, and the pages it had so far."""

    host: str
    name: str
    incident: int
    escalated_at: datetime
    pages: int


def cutoffs(settings: Settings, now: datetime) -> tuple[datetime, datetime | None]:
    """A first page is due for an escalation made before the first instant, a repeat for
    a page sent before the second (None: no repeats)."""
    escalated_before = now - timedelta(seconds=settings.escalate_after_s)
    if not settings.escalation_repeat_s:
        return escalated_before, None
    return escalated_before, now - timedelta(seconds=settings.escalation_repeat_s)


def page_notification(settings: Settings, incident: Incident, due: DuePage
                      ) -> Notification:
    """The page: the escalation's own message, after a line saying it was not
    acknowledged within the delay (and, for a repeat, how many pages went before)."""
    waited = format_duration_s(settings.escalate_after_s)
    number = due.pages + 1
    repeat = f" (page {number})" if number > 1 else ""
    lead = (f"**Not acknowledged** within {waited} of its escalation at "
            f"{due.escalated_at:%Y-%m-%d %H:%M:%S} UTC{repeat}.")
    fields = {**message_fields(incident), "escalated": f"{due.escalated_at:%H:%M:%S} UTC"}
    return Notification(
        channel=Channel.ESCALATION,
        title=f"{incident.name} on {incident.host}: escalation not acknowledged{repeat}",
        body=f"{lead}\n\n{message_body(incident)}", importance=Importance.CRITICAL,
        fields=fields, dedup_key=page_key(due, number), groupable=True,
        state=IncidentStep.ESCALATED)


def page_key(due: DuePage, number: int) -> str:
    """The outbox's dedup key of one page of one escalation."""
    return (f"escalation_page:{due.host}:{due.name}:{due.incident}:"
            f"{due.escalated_at.isoformat()}:{number}")


class EscalationPages:
    """The named queries of ``escalation_pages``, on the pool or inside a transaction."""

    def __init__(self, db: Queries) -> None:
        self.db = db

    def due(self, escalated_before: datetime, paged_before: datetime | None,
            limit: int) -> list[DuePage]:
        """The escalated incidents whose next page is due, their containers rows locked
        (those another transaction holds skipped)."""
        return as_rows(DuePage, self.db.fetch_all(
            "escalation_due", escalated_before=escalated_before, paged_before=paged_before,
            limit=limit))

    def count_page(self, due: DuePage, now: datetime) -> int | None:
        """Count the next page of ``due``: its number, or None when another daemon
        counted it since ``due`` was read."""
        row = self.db.fetch_one("escalation_page_claim", host=due.host, container=due.name,
                                incident=due.incident, escalated_at=due.escalated_at,
                                pages=due.pages, now=now)
        return None if row is None else int(row["pages"])

    def next_due(self, after_s: float, repeat_s: float) -> datetime | None:
        """When the earliest escalation still waiting is due (None: none waits)."""
        row = self.db.fetch_one("escalation_next_due", after_s=after_s, repeat_s=repeat_s)
        return None if row is None else row["due_at"]

    def prune(self, cutoff: datetime, from_time: datetime, batch_rows: int) -> PrunedBatch:
        """Delete one batch of the pages of escalations made before ``cutoff`` whose
        incident is no longer escalated."""
        return PrunedBatch.of(self.db.fetch_one(
            "cleanup_escalation_pages_batch", cutoff=cutoff, from_time=from_time,
            batch_rows=batch_rows))


class Pager:
    """Counts, records and queues the pages that are due."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.log = get_logger(component="escalation")

    def page_due(self, now: datetime) -> list[Event]:
        """Every page due at ``now``, each counted, recorded and queued: their events."""
        paged: list[Event] = []
        while True:
            batch = self._page_batch(now)
            paged.extend(batch)
            for event in batch:
                self.runtime.store.log_event(event)
            if len(batch) < PAGES_PER_TRANSACTION:
                return paged

    def _page_batch(self, now: datetime) -> list[Event]:
        escalated_before, paged_before = cutoffs(self.settings, now)
        events: list[Event] = []
        with self.runtime.db.transaction() as tx:
            due = EscalationPages(tx).due(escalated_before, paged_before,
                                          PAGES_PER_TRANSACTION)
            for page in due:
                event = self._page(tx, page, now)
                if event is not None:
                    events.append(event)
        return events

    def _page(self, tx: Queries, due: DuePage, now: datetime) -> Event | None:
        """One page, in ``tx``; None when another daemon counted it first."""
        number = EscalationPages(tx).count_page(due, now)
        if number is None:
            return None
        row = Containers(tx).by_name(due.host, due.name)
        if row is None:
            return None
        notify = page_notification(self.settings, Incident.of_row(row), due)
        event = make_event(
            EventType.ESCALATION_PAGED,
            f"{due.name}: escalation not acknowledged within "
            f"{format_duration_s(self.settings.escalate_after_s)}; sent to the escalation "
            f"route (page {number})",
            importance=Importance.HIGH, host=due.host, source="escalation",
            details={"container": due.name, "host": due.host, "incident": due.incident,
                     "escalated_at": due.escalated_at.isoformat(), "page": number,
                     "paged_by": self.settings.host},
            timestamp=now)
        insert_event(tx, event, notify)
        return event

    def next_due(self) -> datetime | None:
        """When the earliest escalation still waiting is due (None: none waits)."""
        return EscalationPages(self.runtime.db).next_due(self.settings.escalate_after_s,
                                                         self.settings.escalation_repeat_s)


# --- the service ---


def page_pending(runtime: Runtime) -> int:
    """Every page due now, once (``aegis run --once``): how many were queued."""
    if not runtime.settings.escalate_after_s:
        return 0
    return len(Pager(runtime).page_due(utcnow()))


def run_pager(runtime: Runtime, stop: threading.Event) -> None:
    """The escalation pager service: pages what is due, then sleeps until the next
    escalation is due (at most POLL_S); nothing while the route is off. A database outage
    is waited out: the rows it would read are still there when it returns."""
    if not runtime.settings.escalate_after_s:
        return
    pager = Pager(runtime)
    database_down = False
    while not stop.is_set():
        try:
            pager.page_due(utcnow())
            delay_s = _sleep_s(pager.next_due(), utcnow())
            if database_down:
                pager.log.info("escalation_pager_resumed")
                database_down = False
        except DatabaseUnavailable as exc:
            if not database_down:
                pager.log.warning("escalation_pager_waiting_for_database", error=str(exc))
                database_down = True
            delay_s = DB_RETRY_S
        except Exception as exc:
            pager.log.error("escalation_pager_failed", error=str(exc), exc_info=True)
            delay_s = DB_RETRY_S
        stop.wait(delay_s)


def _sleep_s(due_at: datetime | None, now: datetime) -> float:
    """Seconds until ``due_at``, within [0.05, POLL_S]."""
    if due_at is None:
        return POLL_S
    return min(POLL_S, max(0.05, (due_at - now).total_seconds()))
