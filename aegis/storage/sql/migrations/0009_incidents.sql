-- compatible-with: 0.1
-- Incidents people can read: each container's open incident (its class, its steps, the
-- dependants folded into it), Swarm tasks observed, and one living message per incident
-- (outbox rows of one thread, and the message each destination holds for it).

ALTER TABLE containers
    -- why the open (or latest) incident happened: unhealthy, broken_probe, oom, crash_loop,
    -- exited
    ADD COLUMN incident_class text,
    -- the open incident's steps, oldest first: [{"at": ..., "step": ..., "text": ...}]
    ADD COLUMN incident_log jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- a dependant waiting for this parent's incident (its own not alerted separately)
    ADD COLUMN folded_into text,
    -- the dependants folded into this container's open incident
    ADD COLUMN affected text[] NOT NULL DEFAULT '{}',
    -- Docker's restart count as aegis saw it rise: [[at, count, exit_code], ...]
    ADD COLUMN docker_restarts jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- the engine's last oom event for this container, and aegis's last restart for memory
    ADD COLUMN oom_at timestamptz,
    ADD COLUMN oom_restart_at timestamptz;

ALTER TABLE containers DROP CONSTRAINT containers_supervision_check;
ALTER TABLE containers ADD CONSTRAINT containers_supervision_check
    CHECK (supervision IN ('supervised', 'protected', 'orchestrated', 'ignored'));
ALTER TABLE containers DROP CONSTRAINT containers_state_check;
ALTER TABLE containers ADD CONSTRAINT containers_state_check
    CHECK (state IN ('ok', 'striking', 'restarting', 'escalated', 'maintenance', 'protected',
                     'orchestrated', 'ignored'));

ALTER TABLE outbox
    -- the living message a row creates or edits (incident:<host>:<container>:<incident>)
    ADD COLUMN thread text,
    -- the incident's state the message shows (its colour): struck, restarted, escalated,
    -- acknowledged, recovered
    ADD COLUMN state text,
    -- an update destinations that cannot edit a message (Apprise) do not get
    ADD COLUMN edit_only boolean NOT NULL DEFAULT false;

-- The message each destination holds for a thread: edited in place by later rows.
CREATE TABLE outbox_messages (
    thread     text NOT NULL,
    target     text NOT NULL,
    message_id text NOT NULL,
    posted_at  timestamptz NOT NULL DEFAULT now(),
    edited_at  timestamptz,
    PRIMARY KEY (thread, target)
);

CREATE INDEX containers_folded_idx ON containers (host, folded_into)
    WHERE folded_into IS NOT NULL;
