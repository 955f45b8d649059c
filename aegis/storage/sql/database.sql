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
    name            text PRIMARY KEY,
    applied_at      timestamptz NOT NULL DEFAULT now(),
    compatible_with text
);

-- name: add_migration_compatibility
-- The column aegis 0.2 added to a table aegis 0.1 created: the oldest aegis (MAJOR.MINOR)
-- a migration declares compatible with the schema holding it.
ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS compatible_with text;

-- name: applied_migrations
-- The migrations already applied and their compatibility; read through to_jsonb, so the
-- row also answers on a table without the column (aegis 0.1's, never migrated since).
SELECT name, to_jsonb(m) ->> 'compatible_with' AS compatible_with
FROM schema_migrations m ORDER BY name;

-- name: record_migration
-- Mark a migration applied, with the compatibility it declares.
INSERT INTO schema_migrations (name, compatible_with) VALUES (%(name)s, %(compatible_with)s);

-- name: backfill_migration_compatibility
-- The compatibility of migrations applied by aegis 0.1 (which recorded none), from the
-- files this aegis has.
UPDATE schema_migrations m SET compatible_with = known.compatible_with
FROM unnest(%(names)s::text[], %(compatible_with)s::text[]) AS known(name, compatible_with)
WHERE m.name = known.name AND m.compatible_with IS NULL;

-- name: doctor_database
-- The server's version, name and clock, and whether it is a standby in recovery.
SELECT current_setting('server_version') AS version, current_database() AS name,
       now() AS db_now, clock_timestamp() AS db_clock, pg_is_in_recovery() AS in_recovery;
