"""Messages that will not be delivered, and the one event that says so: a channel with no
destination closes its pending messages as undeliverable (one high
``notifications_undeliverable`` event until a destination is configured), and a message
still pending after AEGIS_OUTBOX_MAX_AGE is given up (a critical ``notification_given_up``
event, posted to the alerts channel when the message was the journal's). Never silently.
"""

from __future__ import annotations

from datetime import datetime

from aegis.notify.channels import unconfigured_reason
from aegis.notify.policy import give_up_cutoff
from aegis.storage.events import EventType, Importance
from aegis.storage.outbox import Channel, Notification, Outbox
from aegis.storage.runtime import Runtime

# The state key that remembers a channel's undeliverable event was recorded.
UNDELIVERABLE_KEY = "outbox_undeliverable:"
# How many titles of the messages given up the event names.
TITLES_NAMED = 10


class Undelivered:
    """Closes a sender's undeliverable and expired messages and records each lapse once."""

    def __init__(self, runtime: Runtime, outbox: Outbox) -> None:
        self.runtime = runtime
        self.outbox = outbox
        # Channels seen configured since their undeliverable event was last cleared.
        self._configured: set[Channel] = set()

    def close_unconfigured(self, channel: Channel, now: datetime) -> int:
        """Close the pending messages of ``channel``, which has no destination; record why
        the first time. How many were closed."""
        reason = unconfigured_reason(channel)
        closed = self.outbox.mark_undeliverable(channel, reason, now)
        if not closed:
            return 0
        store = self.runtime.store
        key = UNDELIVERABLE_KEY + channel
        if not store.get_state(key):
            store.set_state(key, {"since": now.isoformat(), "reason": reason})
            store.record_event(
                EventType.NOTIFICATIONS_UNDELIVERABLE,
                f"{channel} messages cannot be delivered: {reason}",
                importance=Importance.HIGH, source="outbox",
                details={"channel": channel, "messages": len(closed)})
            self._configured.discard(channel)
        return len(closed)

    def note_configured(self, channel: Channel) -> None:
        """``channel`` has a destination: a later lapse is recorded again."""
        if channel in self._configured:
            return
        key = UNDELIVERABLE_KEY + channel
        if self.runtime.store.get_state(key):
            self.runtime.store.set_state(key, None)
        self._configured.add(channel)

    def give_up_expired(self, channel: Channel, now: datetime) -> int:
        """Give up the messages of ``channel`` pending longer than AEGIS_OUTBOX_MAX_AGE and
        record it. How many were given up."""
        max_age_s = self.runtime.settings.outbox_max_age_s
        given_up = self.outbox.give_up(channel, give_up_cutoff(now, max_age_s), now)
        if not given_up:
            return 0
        summary = (f"gave up {len(given_up)} {channel} message(s) undelivered after "
                   f"{max_age_s:g}s: {given_up[-1].last_error}")
        # Said on the alerts channel, unless that is the one failing.
        notify = None
        if channel != Channel.ALERTS:
            notify = Notification(
                Channel.ALERTS, f"aegis gave up {len(given_up)} {channel} message(s)",
                body=summary, importance=Importance.CRITICAL)
        self.runtime.store.record_event(
            EventType.NOTIFICATION_GIVEN_UP, summary, importance=Importance.CRITICAL,
            source="outbox",
            details={"channel": channel, "outbox_ids": [r.id for r in given_up],
                     "titles": [r.title for r in given_up[:TITLES_NAMED]]},
            notify=notify)
        return len(given_up)
