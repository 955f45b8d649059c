-- jobs, job_runs, daemons and host_leases: claims, runs, the jobs a daemon advertises,
-- heartbeats, the host's lease, and the aggregates and retention of runs. Owned by
-- aegis/scheduling/repository.py.
-- The digest_*, status_*, metrics_*, page_* and cleanup_* prefixes: see
-- aegis/storage/queries.py.

-- name: claim_runs
-- Claim slots of jobs, all in one statement (one commit for every job due at a tick); a
-- slot is recorded 'skipped' when a live run of its job is still going: one this daemon
-- is running (its ids in running_ids), or one of another daemon whose heartbeat is
-- recent. A row of this daemon's that it is not running (its finish lost with the last
-- commits of a primary that failed over) does not hold the job up. A slot another
-- daemon claimed first is not returned (a job that allows overlap is never skipped). Rows
-- go in key order, so two daemons claiming the
-- same slots at once wait for each other in the same order and cannot deadlock.
WITH wanted AS (
    SELECT *
    FROM unnest(%(job_ids)s::text[], %(scope_keys)s::text[], %(triggers)s::text[],
                %(slots)s::timestamptz[], %(overlaps)s::boolean[])
         AS w (job_id, scope_key, trigger, scheduled_for, overlap)
), checked AS (
    SELECT w.*, NOT w.overlap AND EXISTS (
        SELECT 1
        FROM job_runs r
        LEFT JOIN daemons d ON d.instance_id = r.instance_id
        WHERE r.job_id = w.job_id AND r.scope_key = w.scope_key AND r.status = 'running'
          AND (r.id = ANY(%(running_ids)s::bigint[])
               OR (r.instance_id <> %(instance_id)s AND d.last_heartbeat_at > %(live_since)s))
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
-- One 'missed' row for a gap of slots that fell due while no daemon ran, or while the
-- loop was late.
INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, started_at, finished_at,
                      status, error, result, instance_id)
VALUES (%(job_id)s, %(scope_key)s, %(host)s, 'catch_up', %(scheduled_for)s, %(now)s, %(now)s,
        'missed', %(error)s, %(result)s, %(instance_id)s)
ON CONFLICT (job_id, scope_key, scheduled_for) DO NOTHING
RETURNING id;

-- name: finish_run
-- Close a running run; a run already closed (timed out, interrupted) stays as it is. With
-- the run's job and slot, only the run of that job and slot: an id the server issued
-- again (its sequence behind, after an asynchronous failover) is another run's.
UPDATE job_runs
SET status = %(status)s, finished_at = %(now)s, error = %(error)s, result = %(result)s
WHERE id = %(id)s AND status = 'running'
  AND (%(job_id)s::text IS NULL
       OR (job_id = %(job_id)s AND scheduled_for = %(scheduled_for)s::timestamptz))
RETURNING id;

-- name: insert_run_record
-- A whole run recorded while the database was down (replayed from the spool).
INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, started_at, finished_at,
                      status, error, result, instance_id)
VALUES (%(job_id)s, %(scope_key)s, %(host)s, %(trigger)s, %(scheduled_for)s, %(started_at)s,
        %(finished_at)s, %(status)s, %(error)s, %(result)s, %(instance_id)s)
ON CONFLICT (job_id, scope_key, scheduled_for) DO NOTHING;

-- name: get_run
-- One run.
SELECT * FROM job_runs WHERE id = %(id)s;

-- name: last_slot
-- The latest slot of a job in a scope that any daemon has recorded: a 'missed' row stands
-- for a gap of slots, up to the one its result names last.
SELECT CASE WHEN status = 'missed' AND result ? 'last'
            THEN greatest(scheduled_for, (result ->> 'last')::timestamptz)
            ELSE scheduled_for END AS scheduled_for
FROM job_runs
WHERE job_id = %(job_id)s AND scope_key = %(scope_key)s AND trigger <> 'manual'
ORDER BY job_runs.scheduled_for DESC
LIMIT 1;

-- name: interrupt_stale_runs
-- Runs left 'running' on this host by a daemon instance that is gone.
UPDATE job_runs
SET status = 'interrupted', finished_at = %(now)s,
    error = 'interrupted: the daemon running it stopped without finishing it'
WHERE status = 'running' AND host = %(host)s AND instance_id IS DISTINCT FROM %(instance_id)s
RETURNING *;

-- name: job_history
-- Recent runs, newest first, of one job or of all, older than a (scheduled_for, id)
-- cursor when one is given (the next page).
SELECT * FROM job_runs
WHERE (%(job_id)s::text IS NULL OR job_id = %(job_id)s)
  AND (%(before_time)s::timestamptz IS NULL
       OR (scheduled_for, id) < (%(before_time)s::timestamptz, %(before_id)s::bigint))
ORDER BY scheduled_for DESC, id DESC
LIMIT %(limit)s;

-- name: last_runs
-- The latest run of every job that was not skipped.
SELECT DISTINCT ON (job_id) *
FROM job_runs
WHERE status <> 'skipped'
ORDER BY job_id, scheduled_for DESC, id DESC;

-- name: upsert_jobs
-- Advertise the jobs this daemon runs (for jobs list and pause flags), in one statement;
-- in id order, so two daemons advertising at once cannot deadlock.
INSERT INTO jobs (id, description, trigger, timezone, scope, source, next_run_at, seen_by,
                  seen_at, watched_since)
SELECT id, description, trigger, timezone, scope, source, next_run_at, %(seen_by)s, %(now)s,
       %(now)s
FROM unnest(%(ids)s::text[], %(descriptions)s::text[], %(triggers)s::text[],
            %(timezones)s::text[], %(scopes)s::text[], %(sources)s::text[],
            %(next_runs)s::timestamptz[])
     AS j (id, description, trigger, timezone, scope, source, next_run_at)
ORDER BY id
ON CONFLICT (id) DO UPDATE
SET description = EXCLUDED.description, trigger = EXCLUDED.trigger,
    timezone = EXCLUDED.timezone, scope = EXCLUDED.scope, source = EXCLUDED.source,
    next_run_at = EXCLUDED.next_run_at,
    seen_by = EXCLUDED.seen_by, seen_at = EXCLUDED.seen_at;

-- name: forget_sourced_job
-- A job added at run time and removed again (its container is gone): its row goes, when
-- this daemon advertised it last (a daemon still running it advertises it again); its
-- runs stay.
DELETE FROM jobs
WHERE id = %(id)s AND source IS NOT NULL AND seen_by = %(seen_by)s
RETURNING id;

-- name: list_job_rows
-- Every job row.
SELECT * FROM jobs ORDER BY id;

-- name: paused_jobs
-- Ids of paused jobs.
SELECT id FROM jobs WHERE paused;

-- name: set_paused
-- Pause or resume a job (a row is created for a job no daemon has advertised yet); a
-- resumed job's silence watch starts again from now.
INSERT INTO jobs (id, paused, paused_at, paused_by, watched_since)
VALUES (%(id)s, %(paused)s, CASE WHEN %(paused)s THEN %(now)s::timestamptz END,
        CASE WHEN %(paused)s THEN %(by)s END, %(now)s)
ON CONFLICT (id) DO UPDATE
SET paused = EXCLUDED.paused, paused_at = EXCLUDED.paused_at, paused_by = EXCLUDED.paused_by,
    watched_since = CASE WHEN jobs.paused AND NOT EXCLUDED.paused THEN EXCLUDED.watched_since
                         ELSE jobs.watched_since END;

-- name: watched_jobs
-- What the silence watch reads of jobs: pause flag, since when watched and silent, and
-- the slot and end of the latest successful run on any host (one index probe per job).
SELECT j.id AS job_id, j.paused, j.watched_since, j.silent_since,
       ok.scheduled_for AS last_ok_slot, ok.finished_at AS last_ok_finished_at
FROM jobs j
LEFT JOIN LATERAL (
    SELECT r.scheduled_for, r.finished_at
    FROM job_runs r
    WHERE r.job_id = j.id AND r.status = 'ok'
    ORDER BY r.scheduled_for DESC
    LIMIT 1
) ok ON true
WHERE j.id = ANY(%(ids)s::text[])
ORDER BY j.id;

-- name: mark_silent
-- A job goes silent, unless it is already, is paused, a successful run later than the one
-- the watch saw has come in since, or a run of it is going on a live daemon (any host: it
-- is given until that run ends): one daemon among all wins and records job_silent.
UPDATE jobs
SET silent_since = %(now)s
WHERE id = %(id)s AND silent_since IS NULL AND NOT paused
  AND NOT EXISTS (SELECT 1 FROM job_runs r
                  WHERE r.job_id = %(id)s AND r.status = 'ok'
                    AND (%(last_ok_slot)s::timestamptz IS NULL
                         OR r.scheduled_for > %(last_ok_slot)s))
  AND NOT EXISTS (SELECT 1 FROM job_runs r
                  JOIN daemons d ON d.instance_id = r.instance_id
                  WHERE r.job_id = %(id)s AND r.status = 'running'
                    AND d.last_heartbeat_at > %(live_since)s)
RETURNING id;

-- name: mark_resumed
-- A silent job ran successfully again: one daemon among all records job_resumed, and the
-- watch starts again from now.
UPDATE jobs
SET silent_since = NULL, watched_since = %(now)s
WHERE id = %(id)s AND silent_since IS NOT NULL
RETURNING id;

-- name: upsert_daemon
-- This daemon's heartbeat.
INSERT INTO daemons (instance_id, host, pid, version, started_at, last_heartbeat_at, status)
VALUES (%(instance_id)s, %(host)s, %(pid)s, %(version)s, %(started_at)s, %(last_heartbeat_at)s,
        %(status)s)
ON CONFLICT (instance_id) DO UPDATE
SET last_heartbeat_at = EXCLUDED.last_heartbeat_at, status = EXCLUDED.status;

-- name: take_host_lease
-- The host's lease for this daemon, when it is free, expired, held from the same
-- AEGIS_HOME (whose pid-file lock this daemon holds) or already this daemon's; no row
-- when another live daemon holds it.
INSERT INTO host_leases (host, instance_id, home_id, pid, expires_at)
VALUES (%(host)s, %(instance_id)s, %(home_id)s, %(pid)s,
        clock_timestamp() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (host) DO UPDATE
SET instance_id = EXCLUDED.instance_id, home_id = EXCLUDED.home_id, pid = EXCLUDED.pid,
    taken_at = clock_timestamp(), expires_at = EXCLUDED.expires_at
WHERE host_leases.expires_at < clock_timestamp() OR host_leases.home_id = EXCLUDED.home_id
   OR host_leases.instance_id = EXCLUDED.instance_id
RETURNING instance_id;

-- name: renew_host_lease
-- Extend this daemon's lease (with each heartbeat); no row when it is no longer its own.
UPDATE host_leases SET expires_at = clock_timestamp() + make_interval(secs => %(ttl_s)s)
WHERE host = %(host)s AND instance_id = %(instance_id)s
RETURNING instance_id;

-- name: release_host_lease
-- A clean stop gives the host's lease back.
DELETE FROM host_leases WHERE host = %(host)s AND instance_id = %(instance_id)s;

-- name: host_lease
-- Who holds a host's lease, until when.
SELECT host, instance_id, pid, taken_at, expires_at FROM host_leases WHERE host = %(host)s;

-- name: status_daemons
-- The latest daemon of every host, with its heartbeat.
SELECT DISTINCT ON (host) host, instance_id, pid, version, status, started_at,
       last_heartbeat_at
FROM daemons
ORDER BY host, last_heartbeat_at DESC;

-- name: forget_host
-- A host taken out of the fleet on purpose: its daemons' rows and its lease go (its
-- runs, events and containers stay); a daemon started as that host later is new to it.
WITH lease AS (DELETE FROM host_leases WHERE host = %(host)s)
DELETE FROM daemons WHERE host = %(host)s RETURNING instance_id;

-- name: digest_job_runs
-- Runs per job and status, by the slot they were scheduled for.
SELECT job_id,
       count(*) FILTER (WHERE status = 'ok') AS ok,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'timeout') AS timeout,
       count(*) FILTER (WHERE status = 'missed') AS missed,
       count(*) FILTER (WHERE status = 'skipped') AS skipped,
       count(*) FILTER (WHERE status = 'interrupted') AS interrupted,
       count(*) FILTER (WHERE status = 'running') AS running
FROM job_runs
WHERE scheduled_for >= %(start)s AND scheduled_for < %(end)s
  AND job_id <> ALL(%(exclude_jobs)s::text[])
  AND (%(host)s::text IS NULL OR host = %(host)s)
GROUP BY job_id
ORDER BY job_id;

-- name: digest_job_failures
-- Failed, timed-out and interrupted runs per job, with the latest error.
SELECT job_id, count(*) AS failures,
       (array_agg(coalesce(error, status) ORDER BY scheduled_for DESC, id DESC))[1]
           AS last_error
FROM job_runs
WHERE scheduled_for >= %(start)s AND scheduled_for < %(end)s
  AND status IN ('failed', 'timeout', 'interrupted')
  AND job_id <> ALL(%(exclude_jobs)s::text[])
  AND (%(host)s::text IS NULL OR host = %(host)s)
GROUP BY job_id
ORDER BY failures DESC, job_id;

-- name: metrics_job_runs
-- Job runs scheduled since %(since)s, by job and status (all hosts).
SELECT job_id, status, count(*) AS runs
FROM job_runs
WHERE scheduled_for >= %(since)s
GROUP BY job_id, status
ORDER BY job_id, status;

-- name: metrics_job_durations
-- Cumulative histogram buckets of finished runs since %(since)s, per job; total and sum repeat per row.
WITH finished AS (
    SELECT job_id, extract(epoch FROM finished_at - started_at)::float8 AS duration_s
    FROM job_runs
    WHERE scheduled_for >= %(since)s
      AND started_at IS NOT NULL AND finished_at IS NOT NULL
      AND status IN ('ok', 'failed', 'timeout', 'interrupted')
)
SELECT f.job_id, b.le, count(*) FILTER (WHERE f.duration_s <= b.le) AS cumulative,
       count(*) AS total, coalesce(sum(f.duration_s), 0)::float8 AS sum_s
FROM finished f
CROSS JOIN unnest(%(bounds_s)s::float8[]) AS b(le)
GROUP BY f.job_id, b.le
ORDER BY f.job_id, b.le;

-- name: metrics_last_success
-- The finish time of each known job's latest successful run (one index probe per job).
SELECT j.id AS job_id,
       (SELECT extract(epoch FROM r.finished_at)::float8
        FROM job_runs r
        WHERE r.job_id = j.id AND r.status = 'ok'
        ORDER BY r.scheduled_for DESC
        LIMIT 1) AS finished_at_s
FROM jobs j
ORDER BY j.id;

-- name: metrics_job_states
-- Each known job: whether the silence watch holds it silent, and the status of its latest
-- slot that ran to an end or was missed, on any host (one index probe per job).
SELECT j.id AS job_id, j.silent_since IS NOT NULL AS silent,
       (SELECT r.status
        FROM job_runs r
        WHERE r.job_id = j.id
          AND r.status IN ('ok', 'failed', 'timeout', 'missed', 'interrupted')
        ORDER BY r.scheduled_for DESC
        LIMIT 1) AS last_status
FROM jobs j
ORDER BY j.id;

-- name: page_job_lateness
-- How late the scheduled runs of [start, end) started, per job: median, 95th percentile
-- and worst, in seconds (catch-up and manual runs have no lateness).
SELECT job_id, count(*) AS runs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lateness_s) AS p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY lateness_s) AS p95_s,
       max(lateness_s) AS max_s
FROM (
    SELECT job_id,
           greatest(0, extract(epoch FROM started_at - scheduled_for))::float8 AS lateness_s
    FROM job_runs
    WHERE scheduled_for >= %(start)s AND scheduled_for < %(end)s
      AND trigger = 'schedule' AND started_at IS NOT NULL
      AND status NOT IN ('skipped', 'missed')
) runs
GROUP BY job_id
ORDER BY job_id;

-- name: page_jobs
-- Every job with its latest run that was not skipped (one index probe per job).
SELECT j.id, j.trigger, j.next_run_at, j.paused, last.status AS last_status,
       last.scheduled_for AS last_scheduled_for
FROM jobs j
LEFT JOIN LATERAL (
    SELECT r.status, r.scheduled_for
    FROM job_runs r
    WHERE r.job_id = j.id AND r.status <> 'skipped'
    ORDER BY r.scheduled_for DESC, r.id DESC
    LIMIT 1
) last ON true
ORDER BY j.id;

-- name: page_problem_runs
-- Failed, timed-out, missed and interrupted runs scheduled in [start, end), newest first.
SELECT * FROM job_runs
WHERE scheduled_for >= %(start)s AND scheduled_for < %(end)s
  AND status IN ('failed', 'timeout', 'missed', 'interrupted')
ORDER BY scheduled_for DESC, id DESC
LIMIT %(limit)s;

-- name: cleanup_job_runs_batch
-- Delete one batch of finished job runs scheduled before the cut-off.
WITH batch AS (
    SELECT id, scheduled_for
    FROM job_runs
    WHERE scheduled_for < %(cutoff)s AND scheduled_for >= %(from_time)s AND status <> 'running'
    ORDER BY scheduled_for
    LIMIT %(batch_rows)s
), deleted AS (
    DELETE FROM job_runs r USING batch b
    WHERE r.id = b.id AND r.status <> 'running'
    RETURNING r.id
)
SELECT (SELECT count(*) FROM deleted) AS deleted,
       (SELECT max(scheduled_for) FROM batch) AS last_time;
