-- compatible-with: 0.1
-- The scheduler: claimed runs, job flags, the task queue and daemon heartbeats.

CREATE TABLE job_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        text NOT NULL,
    scope_key     text NOT NULL,
    host          text NOT NULL,
    trigger       text NOT NULL CHECK (trigger IN ('schedule', 'manual', 'catch_up')),
    scheduled_for timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    status        text NOT NULL CHECK (status IN
                  ('running', 'ok', 'failed', 'timeout', 'skipped', 'missed', 'interrupted')),
    error         text,
    result        jsonb,
    instance_id   text,
    UNIQUE (job_id, scope_key, scheduled_for)
);

CREATE INDEX job_runs_job_scheduled_idx ON job_runs (job_id, scheduled_for DESC);
CREATE INDEX job_runs_scheduled_idx ON job_runs (scheduled_for);
CREATE INDEX job_runs_running_idx ON job_runs (instance_id) WHERE status = 'running';

CREATE TABLE jobs (
    id            text PRIMARY KEY,
    description   text NOT NULL DEFAULT '',
    trigger       text NOT NULL DEFAULT '',
    scope         text NOT NULL DEFAULT 'host' CHECK (scope IN ('host', 'cluster')),
    next_run_at   timestamptz,
    seen_by       text,
    seen_at       timestamptz,
    paused        boolean NOT NULL DEFAULT false,
    paused_at     timestamptz,
    paused_by     text
);

CREATE TABLE tasks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        text NOT NULL,
    args          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    requested_by  text NOT NULL DEFAULT current_user,
    host          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    run_id        bigint REFERENCES job_runs (id) ON DELETE SET NULL,
    error         text
);

CREATE INDEX tasks_pending_idx ON tasks (id) WHERE status = 'pending';
CREATE INDEX tasks_created_idx ON tasks (created_at);
CREATE INDEX tasks_run_idx ON tasks (run_id);

CREATE FUNCTION aegis_notify_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aegis_tasks', NEW.id::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_notify AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION aegis_notify_task();

CREATE TABLE daemons (
    instance_id       text PRIMARY KEY,
    host              text NOT NULL,
    pid               integer NOT NULL,
    version           text NOT NULL,
    started_at        timestamptz NOT NULL,
    last_heartbeat_at timestamptz NOT NULL,
    status            text NOT NULL CHECK (status IN ('running', 'stopping', 'stopped'))
);

CREATE INDEX daemons_host_idx ON daemons (host, last_heartbeat_at DESC);
