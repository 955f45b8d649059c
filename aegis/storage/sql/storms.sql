-- storms: one host's storm of incidents and what its message shows. Owned by
-- aegis/supervision/storms.py.

-- name: storm_lock_open
-- The host's open storms, oldest first, locked until the transaction ends.
SELECT * FROM storms WHERE host = %(host)s AND ended_at IS NULL ORDER BY id FOR UPDATE;

-- name: storm_start
-- A new open storm, its message's first version queued.
INSERT INTO storms (host, started_at, members, edits)
VALUES (%(host)s, %(started_at)s, %(members)s, 1)
RETURNING *;

-- name: storm_save
-- A storm's members, the versions of its message and its end, after a step.
UPDATE storms SET members = %(members)s, edits = %(edits)s, ended_at = %(ended_at)s
WHERE id = %(id)s;

-- name: storm_serialize
-- Storm detection of one host, one transaction at a time: a second opening counts the
-- first once it is committed.
SELECT pg_advisory_xact_lock(hashtextextended('aegis_storm:' || %(host)s, 0));
