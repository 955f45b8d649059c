-- Read-only probes for `aegis doctor`.

-- name: doctor_database
-- The server's version, name and clock.
SELECT current_setting('server_version') AS version, current_database() AS name,
       now() AS db_now, clock_timestamp() AS db_clock;

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
