"""Living messages: the outbox rows of one thread (an incident) make one message per
destination. The first row a destination takes is posted (Discord answers
``?wait=true`` with the message's id); each later row edits that message in place
(``PATCH /webhooks/{id}/{token}/messages/{message_id}``). The id is kept in
``outbox_messages``, so a daemon restarted between two edits edits the same message. A
message deleted by a person (404 Unknown Message) is posted afresh, never failed.

The rows themselves go through the sender like every other: in the channel's order,
leased, retried with back-off, held back by 429s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aegis.notify.messages import Message
from aegis.notify.targets import Outcome, Result, Target
from aegis.storage.outbox import Outbox, OutboxRow


class LivingMessages:
    """Delivers a row to one destination: posted, or edited into the message the
    destination holds for the row's thread."""

    def __init__(self, outbox: Outbox, log: Any) -> None:
        self.outbox = outbox
        self.log = log

    def send(self, target: Target, row: OutboxRow, message: Message) -> Outcome:
        """Deliver ``row`` (rendered as ``message``) to ``target``: a post, or for a row of
        a thread and a destination that edits, an edit of the message it holds for the
        thread. A delivered outcome's ``message_id`` is the message ``target`` holds
        afterwards (for a row of a thread: the one to keep)."""
        if row.thread is None or not target.edits:
            return target.send(message)
        message_id = self.outbox.thread_message(row.thread, target.id)
        if message_id is None:
            return target.send(message)
        outcome = target.edit(message_id, message)
        if outcome.result != Result.GONE:
            return replace(outcome, message_id=message_id) if outcome.delivered else outcome
        self.log.warning("notification_message_gone", outbox_id=row.id, thread=row.thread,
                         target=target.label, reason=outcome.reason)
        return target.send(message)
