"""Paging without the database: what is sent straight to a channel's destinations while
PostgreSQL does not answer, since the outbox that normally carries it is in PostgreSQL.

``DirectPager`` is the store's pager (aegis/storage/store.py): an escalation decided
offline is posted at once, rendered as the sender renders a row, and spooled marked sent
(with the message each destination holds), so its replay records it delivered and its
thread adopts the message: the recovery edits it. A destination that did not take it (a
timeout, a 5xx) is left to the sender, once the row is written back.

``run_database_watch`` is the service that notices the outage itself: after
AEGIS_DB_OUTAGE_ALERT_AFTER it posts one ``cannot reach its database`` message, kept in the
spool (aegis/storage/dboutage.py) so a restart mid-outage does not post it twice; the
spool's replay resolves it when the database answers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from aegis.core.clock import utcnow
from aegis.core.config import Settings
from aegis.core.errors import StoreError
from aegis.core.logs import get_logger
from aegis.notify.channels import targets_for
from aegis.notify.messages import Message
from aegis.notify.targets import Result, Target
from aegis.storage.dboutage import DatabaseOutage, open_outage, outage_message
from aegis.storage.outbox import Channel, Notification, SentOffline
from aegis.storage.runtime import Runtime
from aegis.storage.store import Pager

# How often the watch asks the database, at most (a shorter alert delay asks more often).
WATCH_POLL_S = 5.0
MIN_WATCH_POLL_S = 0.5

Clock = Callable[[], datetime]


def offline_message(notification: Notification, host: str, instance: str,
                    now: datetime) -> Message:
    """The message of one notification, as the sender would render its row, saying it was
    sent without the database."""
    fields = [("host", host), *((k, v) for k, v in notification.fields.items()
                                if (k, v) != ("host", host))]
    return Message(title=notification.title, description=notification.body,
                   importance=notification.importance, fields=tuple(fields),
                   footer=f"aegis on {host} · sent by {instance} without its database",
                   timestamp=now, state=notification.state)


class DirectPager:
    """Sends a notification straight to its channel's destinations (one post at a time,
    whichever thread asks)."""

    def __init__(self, settings: Settings, *,
                 targets: dict[Channel, list[Target]] | None = None,
                 instance: str | None = None, clock: Clock = utcnow) -> None:
        self.targets = targets if targets is not None else targets_for(settings)
        self.instance = instance or f"{settings.host}-{os.getpid()}"
        self.clock = clock
        self.log = get_logger(component="offline_pager")
        self._lock = threading.Lock()

    def page(self, notification: Notification, host: str) -> Notification:
        """``notification`` posted to each destination of its channel, with ``sent``
        saying how; unchanged when none took it (it then waits in the spool)."""
        targets = self.targets.get(notification.channel, [])
        if not targets:
            return notification
        with self._lock:
            now = self.clock()
            message = offline_message(notification, host, self.instance, now)
            results: dict[str, str] = {}
            messages: dict[str, str] = {}
            for target in targets:
                outcome = target.send(message)
                if outcome.delivered:
                    results[target.id] = Result.DELIVERED
                    messages[target.id] = outcome.message_id or ""
                elif not outcome.should_retry:
                    results[target.id] = f"{Result.FAILED}: {outcome.reason}"
                else:
                    self.log.warning("notification_page_retry", title=notification.title,
                                     target=target.label, reason=outcome.reason)
        if not messages:
            self.log.error("notification_page_failed", title=notification.title,
                           results=results)
            return notification
        self.log.warning("notification_paged_offline", title=notification.title,
                         destinations=len(messages))
        return replace(notification, sent=SentOffline(
            at=now, sent_by=self.instance, results=results, messages=messages,
            complete=len(results) == len(targets)))


# --- the database's own outage ---


class DatabaseWatch:
    """Follows whether this host's database answers: an outage is kept in the spool from
    its start, and its message sent once when it has lasted AEGIS_DB_OUTAGE_ALERT_AFTER."""

    def __init__(self, runtime: Runtime, pager: Pager) -> None:
        self.runtime = runtime
        self.pager = pager
        self.host = runtime.settings.host
        self.log = get_logger(component="database_watch")
        self.outage: DatabaseOutage | None = None

    def look(self, now: datetime) -> None:
        """Ask the database once, at ``now``, and do what the answer calls for."""
        try:
            self.runtime.db.probe()
        except StoreError as exc:
            self._unreachable(now, str(exc))
            return
        if self.outage is not None:
            self.log.info("database_reachable", since=self.outage.since.isoformat())
            self.outage = None
            # writes the outage back (its event, its message resolved) if nothing has yet
            self.runtime.store.replay_spool()

    def _unreachable(self, now: datetime, error: str) -> None:
        spool = self.runtime.store.spool
        if self.outage is None:
            # one begun before this process (a restart) goes on
            self.outage = open_outage(spool, self.host)
            if self.outage is None:
                first_line = (error.splitlines() or [""])[0]
                self.outage = DatabaseOutage(self.host, since=now, error=first_line)
                spool.append(self.outage.to_record())
            self.log.warning("database_unreachable", since=self.outage.since.isoformat(),
                             message_sent=self.outage.sent is not None, error=error)
        alert_after_s = self.runtime.settings.db_outage_alert_after_s
        if not alert_after_s or not self.outage.due(now, alert_after_s):
            return
        message = self.pager.page(outage_message(self.outage), self.host)
        if message.sent is None and self.outage.alerted:
            return  # said already that it is due; the post is tried again next time
        self.outage = self.outage.with_message(message.sent)
        spool.append(self.outage.to_record())


def watch_poll_s(settings: Settings) -> float:
    """How often the watch asks: every WATCH_POLL_S, more often for a short alert delay."""
    alert_after_s = settings.db_outage_alert_after_s or WATCH_POLL_S * 4
    return max(MIN_WATCH_POLL_S, min(WATCH_POLL_S, alert_after_s / 4))


def run_database_watch(runtime: Runtime, stop_event: threading.Event) -> None:
    """The database watch service: until ``stop_event`` is set. A daemon whose store has
    no pager (no destination to page) still keeps the outage, for its event."""
    pager = runtime.store.pager or DirectPager(runtime.settings, targets={})
    watch = DatabaseWatch(runtime, pager)
    poll_s = watch_poll_s(runtime.settings)
    while not stop_event.is_set():
        try:
            watch.look(utcnow())
        except Exception as exc:  # a loop that must outlive anything its look meets
            watch.log.error("database_watch_failed", error=str(exc), exc_info=True)
        stop_event.wait(poll_s)
