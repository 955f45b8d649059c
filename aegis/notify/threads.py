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

from typing import Any

from aegis.notify.messages import Message
from aegis.notify.targets import Outcome, Result, Target
from aegis.storage.outbox import Outbox, OutboxRow


def send(outbox: Outbox, target: Target, row: OutboxRow, message: Message,
         kept: dict[str, str], log: Any) -> Outcome:
    """Deliver ``row`` (rendered as ``message``) to ``target``: a post, or for a row of a
    thread and a destination that edits, an edit of the message it holds for the thread.
    The message ``target`` holds afterwards goes into ``kept`` (target id -> message id)."""
    if row.thread is None or not target.edits:
        return target.send(message)
    message_id = outbox.thread_message(row.thread, target.id)
    if message_id is not None:
        outcome = target.edit(message_id, message)
        if outcome.result != Result.GONE:
            if outcome.delivered:
                kept[target.id] = message_id
            return outcome
        log.warning("notification_message_gone", outbox_id=row.id, thread=row.thread,
                    target=target.label, reason=outcome.reason)
    outcome = target.send(message)
    if outcome.delivered and outcome.message_id:
        kept[target.id] = outcome.message_id
    return outcome
