-- compatible-with: 0.1
-- The single-daemon-per-host guard as a lease row renewed with the heartbeat, instead of a
-- session advisory lock: it needs no connection held for the daemon's life, and it passes
-- through a pooler in transaction mode (PgBouncer).
CREATE TABLE host_leases (
    host        text PRIMARY KEY,
    instance_id text NOT NULL,
    -- the AEGIS_HOME the holder runs from (the id in its home.id file): a daemon holding
    -- that home's pid-file lock knows the lease's holder is gone and takes it over at once
    home_id     text NOT NULL,
    pid         integer NOT NULL,
    taken_at    timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
