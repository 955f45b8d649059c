-- name: enqueue_notification
-- Queue one message; a dedup key seen before queues nothing.
INSERT INTO outbox (channel, dedup_key, host, event_uid, title, body, importance, fields,
                    fingerprint, groupable)
VALUES (%(channel)s, %(dedup_key)s, %(host)s, %(event_uid)s, %(title)s, %(body)s,
        %(importance)s::importance, %(fields)s, %(fingerprint)s, %(groupable)s)
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

-- name: outbox_release
-- Give back rows claimed but not posted.
UPDATE outbox SET claimed_by = NULL, claimed_until = NULL
WHERE id = ANY(%(ids)s) AND claimed_by = %(instance)s AND status = 'pending';

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

-- name: outbox_status_counts
-- How many rows have each status.
SELECT status, count(*) AS rows FROM outbox GROUP BY status ORDER BY status;

-- name: outbox_by_dedup_key
-- One row by its de-duplication key.
SELECT * FROM outbox WHERE dedup_key = %(dedup_key)s;
