-- Aggregates read at scrape time by /metrics. Each one is bounded by an index or a time
-- window, so a scrape stays cheap on a database holding months of history.

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

-- name: metrics_has_containers
-- Whether the containers table (strike state) exists yet.
SELECT to_regclass('containers') IS NOT NULL AS present;

-- name: metrics_containers
-- This host's supervised containers: name, state and current strikes.
SELECT name, state, strikes
FROM containers
WHERE host = %(host)s AND removed_at IS NULL
ORDER BY name;

-- name: metrics_container_actions
-- Restarts and escalations this host recorded, by container (high/critical events are kept).
SELECT event_type, coalesce(details->>'container', '') AS container, count(*) AS actions
FROM episodic_memory
WHERE event_type IN ('container_restarted', 'container_escalated') AND host = %(host)s
GROUP BY event_type, container
ORDER BY event_type, container;

-- name: metrics_outbox
-- Outbox rows by channel and status, with the age of the oldest pending message.
SELECT channel, status, count(*) AS messages,
       extract(epoch FROM now() - min(created_at))::float8 AS oldest_age_s
FROM outbox
WHERE status <> 'delivered' OR delivered_at >= %(since)s
GROUP BY channel, status
ORDER BY channel, status;

-- name: metrics_outbox_attempts
-- Failed delivery attempts of messages created since %(since)s, by channel.
SELECT channel, coalesce(sum(GREATEST(attempts - CASE WHEN status = 'delivered' THEN 1 ELSE 0 END,
                                      0)), 0) AS failures
FROM outbox
WHERE created_at >= %(since)s
GROUP BY channel
ORDER BY channel;

-- name: metrics_events
-- Events recorded since %(since)s by importance (all hosts).
SELECT importance::text AS importance, count(*) AS events
FROM episodic_memory
WHERE timestamp >= %(since)s
GROUP BY importance
ORDER BY importance;
