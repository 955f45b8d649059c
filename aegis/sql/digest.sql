-- Aggregates of one UTC day (start inclusive, end exclusive) for the evening digest and
-- the morning status. Every number is counted here; no day's events reach Python.

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
GROUP BY job_id
ORDER BY job_id;

-- name: digest_event_counts
-- Events per importance and type.
SELECT importance::text AS importance, event_type, count(*) AS events
FROM episodic_memory
WHERE timestamp >= %(start)s AND timestamp < %(end)s
  AND event_type <> ALL(%(exclude_types)s::text[])
GROUP BY importance, event_type;

-- name: digest_pending_tasks
-- Tasks that were waiting at a moment: created before it and not yet started by then.
SELECT count(*) AS pending
FROM tasks
WHERE created_at < %(as_of)s
  AND (status = 'pending' OR coalesce(started_at, finished_at) >= %(as_of)s);

-- name: digest_decision_counts
-- Restarts, escalations and acknowledgements, counted per type.
SELECT event_type, count(*) AS events
FROM episodic_memory
WHERE event_type = ANY(%(types)s::text[])
  AND timestamp >= %(start)s AND timestamp < %(end)s
GROUP BY event_type;

-- name: digest_decisions
-- The first restarts, escalations and acknowledgements of the window, oldest first.
SELECT timestamp, event_type,
       coalesce(details->>'container', details->>'name', '') AS container,
       coalesce(details->>'host', host) AS host,
       coalesce(details->>'reason', summary) AS reason
FROM episodic_memory
WHERE event_type = ANY(%(types)s::text[])
  AND timestamp >= %(start)s AND timestamp < %(end)s
ORDER BY timestamp, id
LIMIT %(limit)s;

-- name: digest_open_escalations
-- Escalations with no later recovery or acknowledgement of the same container, at a moment.
SELECT DISTINCT ON (coalesce(e.details->>'host', e.host),
                    coalesce(e.details->>'container', e.details->>'name', ''))
       coalesce(e.details->>'container', e.details->>'name', '') AS container,
       coalesce(e.details->>'host', e.host) AS host,
       e.timestamp AS since,
       coalesce(e.details->>'reason', e.summary) AS reason
FROM episodic_memory e
WHERE e.event_type = 'container_escalated' AND e.timestamp < %(as_of)s
  AND NOT EXISTS (
      SELECT 1 FROM episodic_memory r
      WHERE r.event_type IN ('container_recovered', 'container_acknowledged')
        AND r.timestamp > e.timestamp AND r.timestamp < %(as_of)s
        AND coalesce(r.details->>'host', r.host) = coalesce(e.details->>'host', e.host)
        AND coalesce(r.details->>'container', r.details->>'name', '')
            = coalesce(e.details->>'container', e.details->>'name', ''))
ORDER BY coalesce(e.details->>'host', e.host),
         coalesce(e.details->>'container', e.details->>'name', ''), e.timestamp DESC
LIMIT %(limit)s;

-- name: digest_flapping
-- Containers restarted at least twice in the window.
SELECT coalesce(details->>'container', details->>'name', '') AS container,
       coalesce(details->>'host', host) AS host,
       count(*) AS restarts
FROM episodic_memory
WHERE event_type = 'container_restarted'
  AND timestamp >= %(start)s AND timestamp < %(end)s
GROUP BY 1, 2
HAVING count(*) >= 2
ORDER BY restarts DESC, host, container
LIMIT %(limit)s;

-- name: digest_job_failures
-- Failed, timed-out and interrupted runs per job, with the latest error.
SELECT job_id, count(*) AS failures,
       (array_agg(coalesce(error, status) ORDER BY scheduled_for DESC, id DESC))[1]
           AS last_error
FROM job_runs
WHERE scheduled_for >= %(start)s AND scheduled_for < %(end)s
  AND status IN ('failed', 'timeout', 'interrupted')
  AND job_id <> ALL(%(exclude_jobs)s::text[])
GROUP BY job_id
ORDER BY failures DESC, job_id;

-- name: digest_delivery_failures
-- Notifications that failed or were given up, per channel, with the latest error.
SELECT channel, count(*) AS failures,
       (array_agg(coalesce(last_error, status) ORDER BY created_at DESC, id DESC))[1]
           AS last_error
FROM outbox
WHERE created_at >= %(start)s AND created_at < %(end)s
  AND status IN ('failed', 'undeliverable')
  AND dedup_key NOT LIKE 'evening_summary:%%'
GROUP BY channel
ORDER BY channel;

-- name: digest_critical_events
-- The first critical events of the window, oldest first.
SELECT timestamp, event_type, host, summary
FROM episodic_memory
WHERE importance = 'critical'
  AND timestamp >= %(start)s AND timestamp < %(end)s
  AND event_type <> ALL(%(exclude_types)s::text[])
ORDER BY timestamp, id
LIMIT %(limit)s;

-- name: status_daemons
-- The latest daemon of every host, with its heartbeat.
SELECT DISTINCT ON (host) host, status, last_heartbeat_at
FROM daemons
ORDER BY host, last_heartbeat_at DESC;

-- name: status_troubled_containers
-- Containers per host whose latest container event in the window says they are not well.
SELECT host, count(*) AS containers
FROM (
    SELECT DISTINCT ON (coalesce(details->>'host', host),
                        coalesce(details->>'container', details->>'name', ''))
           coalesce(details->>'host', host) AS host, event_type
    FROM episodic_memory
    WHERE event_type IN ('container_unhealthy', 'container_restarted', 'container_escalated',
                         'container_recovered', 'container_acknowledged')
      AND timestamp >= %(start)s AND timestamp < %(end)s
    ORDER BY coalesce(details->>'host', host),
             coalesce(details->>'container', details->>'name', ''), timestamp DESC, id DESC
) latest
WHERE event_type IN ('container_unhealthy', 'container_restarted', 'container_escalated')
GROUP BY host
ORDER BY host;

-- name: status_maintenance_containers
-- Containers in maintenance now: by label, or by `aegis maintenance` until a time.
SELECT host, name AS container
FROM containers
WHERE removed_at IS NULL
  AND (state = 'maintenance' OR maintenance_label OR maintenance_until > %(as_of)s)
ORDER BY host, name
LIMIT %(limit)s;
