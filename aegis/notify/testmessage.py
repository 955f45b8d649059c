"""``aegis notify test``: a test message queued to a channel and posted at once through the
path every message takes (the outbox, the sender, the channel's destinations), so a
delivery here means the daemon's deliveries work too."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aegis.notify.sender import Sender
from aegis.storage.events import EventType, Importance
from aegis.storage.outbox import Channel, Notification, OutboxRow
from aegis.storage.runtime import Runtime


@dataclass(frozen=True)
class SentTestMessage:
    """The test message's row after its post (None: it could not be queued), and the
    destinations it was meant for."""

    row: OutboxRow | None
    destinations: list[str]


def send_test_message(runtime: Runtime, channel: Channel) -> SentTestMessage:
    """Queue a test message to ``channel`` and post it now, with no retry."""
    sender = Sender(runtime)
    dedup_key = f"test:{uuid.uuid4()}"
    runtime.store.record_event(
        EventType.NOTIFICATION_TEST, f"test message to the {channel} channel", source="cli",
        notify=Notification(channel, "aegis test message",
                            body=f"A test message from aegis on {runtime.settings.host}. "
                                 "If you can read this, the channel works.",
                            importance=Importance.LOW, dedup_key=dedup_key, groupable=False))
    queued = sender.outbox.by_dedup_key(dedup_key)
    return SentTestMessage(row=sender.deliver_row(queued.id) if queued else None,
                           destinations=[target.label for target in sender.targets[channel]])
