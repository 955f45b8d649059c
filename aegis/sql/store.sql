-- name: ping
-- Is the database answering?
SELECT 1 AS ok;

-- name: database_now
-- The database's clock, for skew checks.
SELECT now() AS now;

-- name: advisory_lock
-- Block until the session-level advisory lock is ours.
SELECT pg_advisory_lock(%(key)s);

-- name: try_advisory_lock
-- Take the session-level advisory lock if nobody holds it.
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- name: advisory_unlock
-- Release a session-level advisory lock.
SELECT pg_advisory_unlock(%(key)s);

-- name: create_schema_migrations
-- The table that records applied migrations.
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
-- Names of the migrations already applied.
SELECT name FROM schema_migrations ORDER BY name;

-- name: record_migration
-- Mark a migration applied.
INSERT INTO schema_migrations (name) VALUES (%(name)s);

-- name: insert_event
-- Record one event; a replayed uid inserts nothing.
INSERT INTO episodic_memory (uid, timestamp, event_type, summary, details, importance, host, source)
VALUES (%(uid)s, %(timestamp)s, %(event_type)s, %(summary)s, %(details)s,
        %(importance)s::importance, %(host)s, %(source)s)
ON CONFLICT (uid) DO NOTHING
RETURNING id;

-- name: query_events
-- Events since a time, optionally of some types and at or above an importance, newest first.
SELECT id, uid, timestamp, event_type, summary, details, importance::text AS importance,
       host, source
FROM episodic_memory
WHERE timestamp >= %(since)s
  AND (%(types)s::text[] IS NULL OR event_type = ANY(%(types)s::text[]))
  AND (%(min_importance)s::importance IS NULL OR importance >= %(min_importance)s::importance)
ORDER BY timestamp DESC, id DESC
LIMIT %(limit)s;

-- name: set_state
-- Upsert a state key; an older write (a replayed spool entry) never overwrites a newer one.
INSERT INTO state (key, value, updated_at)
VALUES (%(key)s, %(value)s, %(updated_at)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
WHERE state.updated_at <= EXCLUDED.updated_at;

-- name: get_state
-- One state key.
SELECT key, value, updated_at FROM state WHERE key = %(key)s;
