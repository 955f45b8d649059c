-- compatible-with: 0.1
-- Storms: when AEGIS_STORM_THRESHOLD containers of one host open incidents within
-- AEGIS_STORM_WINDOW, their incidents become one host incident with one living message
-- (outbox thread storm:<host>:<id>). Healing goes on per container; a storm's row says
-- which incidents it covers and where each stands, so its message can be rebuilt by any
-- step and survives a restart of aegis.

CREATE TABLE storms (
    id          bigserial PRIMARY KEY,
    host        text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    -- the incidents it covers, in the order they joined:
    -- [{"name": ..., "incident": n, "step": ..., "at": ..., "restarts": n,
    --   "own_message": bool}]
    members     jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- the versions of its message queued so far (the next one's dedup key)
    edits       integer NOT NULL DEFAULT 0
);

-- The open storms of a host (one, but for an escalation nobody acknowledged in an old one).
CREATE INDEX storms_open_idx ON storms (host) WHERE ended_at IS NULL;

-- A thread's pending rows: a newer version of a storm's message finds the edits it makes
-- needless (aegis/storage/sql/outbox.sql, outbox_supersede_edits) without a scan.
CREATE INDEX outbox_thread_pending_idx ON outbox (thread, id)
    WHERE status = 'pending' AND thread IS NOT NULL;
