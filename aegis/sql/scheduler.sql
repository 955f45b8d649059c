-- name: claim_runs
-- Claim slots of jobs, all in one statement (one commit for every job due at a tick); a
-- slot is recorded 'skipped' when a live run of its job is still going. A slot another
-- daemon claimed first is not returned. Rows go in key order, so two daemons claiming the
-- same slots at once wait for each other in the same order and cannot deadlock.
WITH wanted AS (
    SELECT *
    FROM unnest(%(job_ids)s::text[], %(scope_keys)s::text[], %(triggers)s::text[],
                %(slots)s::timestamptz[]) AS w (job_id, scope_key, trigger, scheduled_for)
), checked AS (
    SELECT w.*, EXISTS (
        SELECT 1
        FROM job_runs r
        LEFT JOIN daemons d ON d.instance_id = r.instance_id
        WHERE r.job_id = w.job_id AND r.scope_key = w.scope_key AND r.status = 'running'
          AND (r.instance_id = %(instance_id)s OR d.last_heartbeat_at > %(live_since)s)
    ) AS busy
    FROM wanted w
)
INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, started_at, finished_at,
                      status, error, instance_id)
SELECT job_id, scope_key, %(host)s, trigger, scheduled_for, %(now)s,
       CASE WHEN busy THEN %(now)s END,
       CASE WHEN busy THEN 'skipped' ELSE 'running' END,
       CASE WHEN busy THEN 'overlap: the previous run is still running' END,
       %(instance_id)s
FROM checked
ORDER BY job_id, scope_key, scheduled_for
ON CONFLICT (job_id, scope_key, scheduled_for) DO NOTHING
RETURNING *;

-- name: record_missed
-- One 'missed' row for a gap of slots that fell due while no daemon ran.
INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, started_at, finished_at,
                      status, error, result, instance_id)
VALUES (%(job_id)s, %(scope_key)s, %(host)s, 'catch_up', %(scheduled_for)s, %(now)s, %(now)s,
        'missed', %(error)s, %(result)s, %(instance_id)s)
ON CONFLICT (job_id, scope_key, scheduled_for) DO NOTHING
RETURNING id;

-- name: finish_run
-- Close a running run; a run already closed (timed out, interrupted) stays as it is.
UPDATE job_runs
SET status = %(status)s, finished_at = %(now)s, error = %(error)s, result = %(result)s
WHERE id = %(id)s AND status = 'running'
RETURNING id;

-- name: get_run
-- One run.
SELECT * FROM job_runs WHERE id = %(id)s;

-- name: last_slot
-- The latest slot of a job in a scope that any daemon has recorded.
SELECT max(scheduled_for) AS scheduled_for
FROM job_runs
WHERE job_id = %(job_id)s AND scope_key = %(scope_key)s AND trigger <> 'manual';

-- name: interrupt_stale_runs
-- Runs left 'running' on this host by a daemon instance that is gone.
UPDATE job_runs
SET status = 'interrupted', finished_at = %(now)s,
    error = 'interrupted: the daemon running it stopped without finishing it'
WHERE status = 'running' AND host = %(host)s AND instance_id IS DISTINCT FROM %(instance_id)s
RETURNING id, job_id;

-- name: interrupt_runs
-- Runs of this instance that did not finish within the shutdown grace.
UPDATE job_runs
SET status = 'interrupted', finished_at = %(now)s, error = %(error)s
WHERE status = 'running' AND id = ANY(%(ids)s)
RETURNING id, job_id;

-- name: job_history
-- Recent runs, newest first, of one job or of all.
SELECT * FROM job_runs
WHERE (%(job_id)s::text IS NULL OR job_id = %(job_id)s)
ORDER BY scheduled_for DESC, id DESC
LIMIT %(limit)s;

-- name: last_runs
-- The latest run of every job.
SELECT DISTINCT ON (job_id) job_id, status, scheduled_for, started_at, finished_at
FROM job_runs
WHERE status <> 'skipped'
ORDER BY job_id, scheduled_for DESC, id DESC;

-- name: upsert_jobs
-- Advertise the jobs this daemon runs (for jobs list and pause flags), in one statement;
-- in id order, so two daemons advertising at once cannot deadlock.
INSERT INTO jobs (id, description, trigger, scope, next_run_at, seen_by, seen_at)
SELECT id, description, trigger, scope, next_run_at, %(seen_by)s, %(now)s
FROM unnest(%(ids)s::text[], %(descriptions)s::text[], %(triggers)s::text[],
            %(scopes)s::text[], %(next_runs)s::timestamptz[])
     AS j (id, description, trigger, scope, next_run_at)
ORDER BY id
ON CONFLICT (id) DO UPDATE
SET description = EXCLUDED.description, trigger = EXCLUDED.trigger, scope = EXCLUDED.scope,
    next_run_at = EXCLUDED.next_run_at, seen_by = EXCLUDED.seen_by, seen_at = EXCLUDED.seen_at;

-- name: list_job_rows
-- Every job row.
SELECT * FROM jobs ORDER BY id;

-- name: paused_jobs
-- Ids of paused jobs.
SELECT id FROM jobs WHERE paused;

-- name: set_paused
-- Pause or resume a job (a row is created for a job no daemon has advertised yet).
INSERT INTO jobs (id, paused, paused_at, paused_by)
VALUES (%(id)s, %(paused)s, CASE WHEN %(paused)s THEN %(now)s::timestamptz END,
        CASE WHEN %(paused)s THEN %(by)s END)
ON CONFLICT (id) DO UPDATE
SET paused = EXCLUDED.paused, paused_at = EXCLUDED.paused_at, paused_by = EXCLUDED.paused_by;

-- name: upsert_daemon
-- This daemon's heartbeat.
INSERT INTO daemons (instance_id, host, pid, version, started_at, last_heartbeat_at, status)
VALUES (%(instance_id)s, %(host)s, %(pid)s, %(version)s, %(started_at)s, %(now)s, %(status)s)
ON CONFLICT (instance_id) DO UPDATE
SET last_heartbeat_at = EXCLUDED.last_heartbeat_at, status = EXCLUDED.status;

-- name: host_daemons
-- The latest daemon instances of a host.
SELECT * FROM daemons WHERE host = %(host)s ORDER BY last_heartbeat_at DESC LIMIT %(limit)s;

-- name: try_daemon_lock
-- The per-host daemon lock (two-key advisory lock: aegis's key, the host's hash).
SELECT pg_try_advisory_lock(%(key)s, hashtext(%(host)s)) AS locked;

-- name: add_task
-- Queue one-off work; the insert trigger wakes listening daemons.
INSERT INTO tasks (job_id, args, requested_by, host)
VALUES (%(job_id)s, %(args)s, %(requested_by)s, %(host)s)
RETURNING *;

-- name: claim_task
-- Take the oldest pending task this daemon may run. A task whose job has a live run in
-- this daemon's scope (cluster, or this host) waits for it, as claim_runs would skip it.
UPDATE tasks SET status = 'running', started_at = %(now)s
WHERE id = (
    SELECT t.id FROM tasks t
    WHERE t.status = 'pending' AND (t.host IS NULL OR t.host = %(host)s)
      AND (t.job_id = ANY(%(known)s)
           OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = t.job_id
                          AND j.seen_at > %(live_since)s))
      AND NOT EXISTS (
          SELECT 1 FROM job_runs r
          LEFT JOIN daemons d ON d.instance_id = r.instance_id
          WHERE r.job_id = t.job_id AND r.status = 'running'
            AND r.scope_key IN ('cluster', %(host)s)
            AND (r.instance_id = %(instance_id)s OR d.last_heartbeat_at > %(live_since)s))
    ORDER BY t.id
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
RETURNING *;

-- name: finish_task
-- Close a task with its run.
UPDATE tasks
SET status = %(status)s, finished_at = %(now)s, run_id = %(run_id)s, error = %(error)s
WHERE id = %(id)s
RETURNING *;

-- name: abandoned_tasks_finished
-- Tasks left 'running' whose run has finished: the daemon died before closing them, so
-- they take their run's outcome (closed by the caller, in the same transaction).
SELECT t.id, t.job_id, r.id AS run_id, r.status AS run_status, r.error AS run_error
FROM tasks t
JOIN job_runs r ON r.job_id = t.job_id AND r.trigger = 'manual'
  AND r.scheduled_for = t.created_at + (t.id %% 1000000) * interval '1 microsecond'
WHERE t.status = 'running' AND r.status <> 'running'
ORDER BY t.id
FOR UPDATE OF t;

-- name: requeue_abandoned_tasks
-- Tasks taken long ago whose run was never claimed: the daemon died in between, nothing
-- ran, so they go back to 'pending'.
UPDATE tasks t SET status = 'pending', started_at = NULL
WHERE t.status = 'running' AND t.started_at < %(taken_before)s
  AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = t.job_id
                  AND r.trigger = 'manual'
                  AND r.scheduled_for = t.created_at + (t.id %% 1000000) * interval '1 microsecond')
RETURNING t.id, t.job_id;

-- name: get_task
-- One task.
SELECT * FROM tasks WHERE id = %(id)s;

-- name: list_tasks
-- Tasks, newest first, optionally of one status.
SELECT * FROM tasks
WHERE (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: cancel_task
-- Cancel a task that has not started.
UPDATE tasks SET status = 'cancelled', finished_at = %(now)s
WHERE id = %(id)s AND status = 'pending'
RETURNING *;

-- name: insert_run_record
-- A whole run recorded while the database was down (replayed from the spool).
INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, started_at, finished_at,
                      status, error, result, instance_id)
VALUES (%(job_id)s, %(scope_key)s, %(host)s, %(trigger)s, %(scheduled_for)s, %(started_at)s,
        %(finished_at)s, %(status)s, %(error)s, %(result)s, %(instance_id)s)
ON CONFLICT (job_id, scope_key, scheduled_for) DO NOTHING;
