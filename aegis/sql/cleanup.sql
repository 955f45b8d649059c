-- Retention: each query deletes one batch in its own short transaction and returns how
-- many rows went and where the next batch starts (keyset on the indexed time column, so
-- no batch rescans what the previous ones removed). Rows deleted by an earlier batch are
-- invisible, so starting again at the last time seen (>=) loses nothing.

-- name: cleanup_low_events_batch
-- Delete one batch of low-importance events older than the cut-off.
WITH batch AS (
    SELECT id, timestamp
    FROM episodic_memory
    WHERE importance = 'low' AND timestamp < %(cutoff)s AND timestamp >= %(from_time)s
    ORDER BY timestamp
    LIMIT %(batch_rows)s
), deleted AS (
    DELETE FROM episodic_memory e USING batch b
    WHERE e.id = b.id AND e.importance = 'low'
    RETURNING e.id
)
SELECT (SELECT count(*) FROM deleted) AS deleted, (SELECT max(timestamp) FROM batch) AS last_time;

-- name: cleanup_job_runs_batch
-- Delete one batch of finished job runs scheduled before the cut-off.
WITH batch AS (
    SELECT id, scheduled_for
    FROM job_runs
    WHERE scheduled_for < %(cutoff)s AND scheduled_for >= %(from_time)s AND status <> 'running'
    ORDER BY scheduled_for
    LIMIT %(batch_rows)s
), deleted AS (
    DELETE FROM job_runs r USING batch b
    WHERE r.id = b.id AND r.status <> 'running'
    RETURNING r.id
)
SELECT (SELECT count(*) FROM deleted) AS deleted,
       (SELECT max(scheduled_for) FROM batch) AS last_time;

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
    RETURNING o.id
)
SELECT (SELECT count(*) FROM deleted) AS deleted,
       (SELECT max(created_at) FROM batch) AS last_time;

-- name: cleanup_containers_batch
-- Delete one batch of rows of containers removed from Docker before the cut-off (a
-- container re-created since has taken its row back: removed_at is NULL again).
WITH batch AS (
    SELECT host, name, removed_at
    FROM containers
    WHERE removed_at < %(cutoff)s AND removed_at >= %(from_time)s
    ORDER BY removed_at
    LIMIT %(batch_rows)s
), deleted AS (
    DELETE FROM containers c USING batch b
    WHERE c.host = b.host AND c.name = b.name AND c.removed_at < %(cutoff)s
    RETURNING c.name
)
SELECT (SELECT count(*) FROM deleted) AS deleted,
       (SELECT max(removed_at) FROM batch) AS last_time;
