"""Delivery of the notifications the outbox holds (aegis/storage/outbox.py queues them
with the events that cause them): the sender claims a channel's oldest rows in order,
policy decides which go out together and when a failed post is tried again, messages
renders them, Discord and Apprise post them (targets: what every destination is; channels:
which ones each channel has), threads keeps an incident's one living message, and
undelivered says, once, what will not arrive. testmessage is ``aegis notify test``.
offline sends what cannot wait while the database is unreachable (an escalation, the
database's own outage), without the outbox.
"""
