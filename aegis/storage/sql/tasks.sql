-- tasks: queued one-off work. Owned by aegis/scheduling/tasks.py.

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
RETURNING t.*;

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

-- name: digest_pending_tasks
-- Tasks that were waiting at a moment: created before it and not yet started by then.
SELECT count(*) AS pending
FROM tasks
WHERE created_at < %(as_of)s
  AND (status = 'pending' OR coalesce(started_at, finished_at) >= %(as_of)s)
  AND (%(host)s::text IS NULL OR host IS NULL OR host = %(host)s);
