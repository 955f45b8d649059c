-- name: enqueue_notification
-- Queue one message; a dedup key seen before queues nothing.
INSERT INTO outbox (channel, dedup_key, host, event_uid, title, body, importance, fields)
VALUES (%(channel)s, %(dedup_key)s, %(host)s, %(event_uid)s, %(title)s, %(body)s,
        %(importance)s::importance, %(fields)s)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id;
