-- outbox: notifications waiting for, or done with, delivery. Owned by
-- aegis/storage/outbox.py.
-- The digest_*, status_*, metrics_* and cleanup_* prefixes: see aegis/storage/queries.py.

-- name: enqueue_notification
-- Queue one message; a dedup key seen before queues nothing.
INSERT INTO outbox (channel, dedup_key, host, event_uid, title, body, importance, fields,
                    fingerprint, groupable, thread, state, edit_only)
VALUES (%(channel)s, %(dedup_key)s, %(host)s, %(event_uid)s, %(title)s, %(body)s,
        %(importance)s::importance, %(fields)s, %(fingerprint)s, %(groupable)s, %(thread)s,
        %(state)s, %(edit_only)s)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id;

-- name: outbox_channel_head
-- The oldest pending rows of a channel, locked; rows another sender is claiming are skipped.
SELECT * FROM outbox
WHERE channel = %(channel)s AND status = 'pending'
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: outbox_first_pending
-- The id of a channel's oldest pending row (the head every sender must start from).
SELECT min(id) AS id FROM outbox WHERE channel = %(channel)s AND status = 'pending';

-- name: outbox_lock_row
-- One pending row, locked, unless another sender holds it.
SELECT * FROM outbox WHERE id = %(id)s AND status = 'pending' FOR UPDATE SKIP LOCKED;

-- name: outbox_claim
-- Lease rows to one sender while it posts them.
UPDATE outbox SET claimed_by = %(instance)s, claimed_until = %(until)s
WHERE id = ANY(%(ids)s);

-- name: outbox_record
-- Store the outcome of one post for every row it carried (the head and merged rows).
UPDATE outbox
SET status = %(status)s,
    attempts = attempts + %(attempted)s,
    next_attempt_at = %(next_attempt_at)s,
    last_error = %(last_error)s,
    delivered_at = %(delivered_at)s,
    target_results = %(target_results)s,
    merged_into = CASE WHEN id = %(head_id)s THEN NULL ELSE %(head_id)s END,
    sent_by = %(instance)s,
    claimed_by = NULL,
    claimed_until = NULL
WHERE id = ANY(%(ids)s) AND status = 'pending';

-- name: outbox_merge_repeat
-- A summarised repeat: told to the operator by an earlier post of the same message.
UPDATE outbox
SET status = 'delivered', delivered_at = %(now)s, merged_into = %(into)s,
    sent_by = %(instance)s, claimed_by = NULL, claimed_until = NULL
WHERE id = %(id)s AND status = 'pending';

-- name: outbox_supersede_edits
-- A thread's pending edits older than its newest pending row, which carries the whole message
-- too: delivered with it, so a burst of steps is one edit, not a queue of them. A row a
-- sender is posting right now (claimed) is left to it.
UPDATE outbox o
SET status = 'delivered', delivered_at = now(), merged_into = newest.id
FROM (SELECT max(id) AS id FROM outbox
      WHERE thread = %(thread)s AND status = 'pending') newest
WHERE o.thread = %(thread)s AND o.status = 'pending' AND o.edit_only AND o.id < newest.id
  AND (o.claimed_until IS NULL OR o.claimed_until < now())
RETURNING o.id;

-- name: outbox_last_posts
-- For each fingerprint, its latest post and how many repeats were merged into it.
SELECT DISTINCT ON (o.fingerprint) o.fingerprint, o.id, o.delivered_at,
       (SELECT count(*) FROM outbox r WHERE r.merged_into = o.id
          AND r.fingerprint = o.fingerprint) AS repeats
FROM outbox o
WHERE o.fingerprint = ANY(%(fingerprints)s) AND o.status = 'delivered'
  AND o.merged_into IS NULL
ORDER BY o.fingerprint, o.delivered_at DESC;

-- name: outbox_mark_undeliverable
-- No destination is configured for the channel: close its pending rows with the reason.
UPDATE outbox SET status = 'undeliverable', last_error = %(reason)s,
    claimed_by = NULL, claimed_until = NULL
WHERE channel = %(channel)s AND status = 'pending'
  AND (claimed_until IS NULL OR claimed_until <= %(now)s)
RETURNING id;

-- name: outbox_give_up
-- Pending rows older than the maximum age: failed, with the last reason kept.
UPDATE outbox
SET status = 'failed',
    last_error = left('gave up after ' || attempts || ' attempt(s): '
                      || coalesce(last_error, 'never attempted'), 2000),
    claimed_by = NULL, claimed_until = NULL
WHERE channel = %(channel)s AND status = 'pending' AND created_at < %(cutoff)s
  AND (claimed_until IS NULL OR claimed_until <= %(now)s)
RETURNING id, title, attempts, last_error;

-- name: outbox_heads
-- Each channel's oldest pending row: when the sender should look again.
SELECT DISTINCT ON (channel) channel, id, created_at, next_attempt_at, claimed_until,
       groupable
FROM outbox
WHERE status = 'pending'
ORDER BY channel, id;

-- name: outbox_get
-- One row by id.
SELECT * FROM outbox WHERE id = %(id)s;

-- name: outbox_list
-- Rows with the given statuses, oldest first.
SELECT * FROM outbox
WHERE status = ANY(%(statuses)s)
ORDER BY id
LIMIT %(limit)s;

-- name: outbox_by_dedup_key
-- One row by its de-duplication key.
SELECT * FROM outbox WHERE dedup_key = %(dedup_key)s;

-- name: outbox_thread_message
-- The message a destination holds for a thread (one living message per incident).
SELECT message_id FROM outbox_messages WHERE thread = %(thread)s AND target = %(target)s;

-- name: outbox_keep_thread_message
-- Remember the message a destination holds for a thread: posted, or edited in place.
INSERT INTO outbox_messages (thread, target, message_id, posted_at)
VALUES (%(thread)s, %(target)s, %(message_id)s, %(now)s)
ON CONFLICT (thread, target) DO UPDATE
SET edited_at = CASE WHEN outbox_messages.message_id = EXCLUDED.message_id
                     THEN EXCLUDED.posted_at END,
    posted_at = CASE WHEN outbox_messages.message_id = EXCLUDED.message_id
                     THEN outbox_messages.posted_at ELSE EXCLUDED.posted_at END,
    message_id = EXCLUDED.message_id;

-- name: digest_delivery_failures
-- Notifications that failed or were given up, per channel, with the latest error.
SELECT channel, count(*) AS failures,
       (array_agg(coalesce(last_error, status) ORDER BY created_at DESC, id DESC))[1]
           AS last_error
FROM outbox
WHERE created_at >= %(start)s AND created_at < %(end)s
  AND status IN ('failed', 'undeliverable')
  AND dedup_key NOT LIKE 'evening_summary:%%'
  AND (%(host)s::text IS NULL OR host = %(host)s)
GROUP BY channel
ORDER BY channel;

-- name: metrics_outbox
-- Outbox rows by channel and status, with the age of the oldest pending message.
SELECT channel, status, count(*) AS messages,
       extract(epoch FROM now() - min(created_at))::float8 AS oldest_age_s
FROM outbox
WHERE status <> 'delivered' OR delivered_at >= %(since)s
GROUP BY channel, status
ORDER BY channel, status;

-- name: metrics_outbox_attempts
-- Failed delivery attempts of messages created since %(since)s, by channel.
SELECT channel, coalesce(sum(GREATEST(attempts - CASE WHEN status = 'delivered' THEN 1 ELSE 0 END,
                                      0)), 0) AS failures
FROM outbox
WHERE created_at >= %(since)s
GROUP BY channel
ORDER BY channel;

-- name: doctor_channel
-- One channel's outbox: the latest delivery, the latest failure and what is waiting.
SELECT
    (SELECT max(delivered_at) FROM outbox
     WHERE channel = %(channel)s AND status = 'delivered') AS last_delivered_at,
    (SELECT count(*) FROM outbox
     WHERE channel = %(channel)s AND status = 'pending') AS pending,
    (SELECT min(created_at) FROM outbox
     WHERE channel = %(channel)s AND status = 'pending') AS oldest_pending_at,
    latest.status AS latest_status,
    latest.last_error AS latest_error,
    latest.created_at AS latest_at
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT status, last_error, created_at FROM outbox
    WHERE channel = %(channel)s AND status <> 'pending'
    ORDER BY id DESC
    LIMIT 1
) AS latest ON true;

-- name: cleanup_outbox_batch
-- Delete one batch of finished notifications (delivered, failed or undeliverable; never
-- pending) created before the cut-off. A message given up keeps its critical
-- notification_given_up event.
WITH batch AS (
    SELECT id, created_at
    FROM outbox
    WHERE created_at < %(cutoff)s AND created_at >= %(from_time)s AND status <> 'pending'
    ORDER BY created_at
    LIMIT %(batch_rows)s
), deleted AS (
    DELETE FROM outbox o USING batch b
    WHERE o.id = b.id AND o.status <> 'pending'
    RETURNING o.id, o.thread
), forgotten AS (
    -- a living message whose thread has no row left: nothing will edit it again
    DELETE FROM outbox_messages m
    WHERE m.thread IN (SELECT thread FROM deleted WHERE thread IS NOT NULL)
      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.thread = m.thread
                      AND o.id NOT IN (SELECT id FROM deleted))
)
SELECT (SELECT count(*) FROM deleted) AS deleted,
       (SELECT max(created_at) FROM batch) AS last_time;
