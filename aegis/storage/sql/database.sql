-- The connection itself: liveness, migrations and what `aegis doctor`
-- asks of the server. Owned by aegis/storage/db.py.

-- name: ping
-- Is the database answering?
SELECT 1 AS ok;

-- name: migration_lock
-- Wait for the migrations' advisory lock, held until the transaction ends.
SELECT pg_advisory_xact_lock(%(key)s);

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

-- name: doctor_database
-- The server's version, name and clock, and whether it is a standby in recovery.
SELECT current_setting('server_version') AS version, current_database() AS name,
       now() AS db_now, clock_timestamp() AS db_clock, pg_is_in_recovery() AS in_recovery;
