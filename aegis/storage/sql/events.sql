-- episodic_memory and state: writes, the event query, the aggregates the digest, the
-- morning status and /metrics read, and retention. Owned by aegis/storage/store.py.
-- The digest_*, status_*, metrics_*, page_* and cleanup_* prefixes: see
-- aegis/storage/queries.py.

-- name: insert_event
-- Record one event; a replayed uid inserts nothing.
INSERT INTO episodic_memory (uid, timestamp, event_type, summary, details, importance, host, source)
VALUES (%(uid)s, %(timestamp)s, %(event_type)s, %(summary)s, %(details)s,
        %(importance)s::importance, %(host)s, %(source)s)
ON CONFLICT (uid) DO NOTHING
RETURNING id;

-- name: query_events
-- Events since a time, optionally of some types, at or above an importance, about one
-- container, and older than a (timestamp, id) cursor (the next page), newest first.
SELECT id, uid, timestamp, event_type, summary, details, importance::text AS importance,
       host, source
FROM episodic_memory
WHERE timestamp >= %(since)s
  AND (%(types)s::text[] IS NULL OR event_type = ANY(%(types)s::text[]))
  AND (%(min_importance)s::importance IS NULL OR importance >= %(min_importance)s::importance)
  AND (%(container)s::text IS NULL OR details->>'container' = %(container)s::text)
  AND (%(before_time)s::timestamptz IS NULL
       OR (timestamp, id) < (%(before_time)s::timestamptz, %(before_id)s::bigint))
ORDER BY timestamp DESC, id DESC
LIMIT %(limit)s;

-- name: set_state
-- Upsert a state key; an older write (a replayed spool entry) never overwrites a newer one.
INSERT INTO state (key, value, updated_at)
VALUES (%(key)s, %(value)s, %(updated_at)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
WHERE state.updated_at <= EXCLUDED.updated_at;

-- name: get_state
-- One state key.
SELECT key, value, updated_at FROM state WHERE key = %(key)s;

-- name: digest_event_counts
-- Events per importance and type.
SELECT importance::text AS importance, event_type, count(*) AS events
FROM episodic_memory
WHERE timestamp >= %(start)s AND timestamp < %(end)s
  AND event_type <> ALL(%(exclude_types)s::text[])
  AND (%(host)s::text IS NULL OR host = %(host)s)
GROUP BY importance, event_type;

-- name: digest_decision_counts
-- Restarts, escalations and acknowledgements, counted per type.
SELECT event_type, count(*) AS events
FROM episodic_memory
WHERE event_type = ANY(%(types)s::text[])
  AND timestamp >= %(start)s AND timestamp < %(end)s
  AND (%(host)s::text IS NULL OR host = %(host)s)
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
  AND (%(host)s::text IS NULL OR host = %(host)s)
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
  AND (%(host)s::text IS NULL OR e.host = %(host)s)
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
  AND (%(host)s::text IS NULL OR host = %(host)s)
GROUP BY 1, 2
HAVING count(*) >= 2
ORDER BY restarts DESC, host, container
LIMIT %(limit)s;

-- name: digest_critical_events
-- The first critical events of the window, oldest first.
SELECT timestamp, event_type, host, summary
FROM episodic_memory
WHERE importance = 'critical'
  AND timestamp >= %(start)s AND timestamp < %(end)s
  AND event_type <> ALL(%(exclude_types)s::text[])
  AND (%(host)s::text IS NULL OR host = %(host)s)
ORDER BY timestamp, id
LIMIT %(limit)s;

-- name: fleet_last_escalations
-- Per host, the time of its latest escalation.
SELECT coalesce(details->>'host', host) AS host, max(timestamp) AS last_escalation_at
FROM episodic_memory
WHERE event_type = 'container_escalated'
GROUP BY 1;

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

-- name: metrics_events
-- Events recorded since %(since)s by importance (all hosts).
SELECT importance::text AS importance, count(*) AS events
FROM episodic_memory
WHERE timestamp >= %(since)s
GROUP BY importance
ORDER BY importance;

-- name: metrics_container_actions
-- Restarts and escalations this host recorded, by container (high/critical events are kept).
SELECT event_type, coalesce(details->>'container', '') AS container, count(*) AS actions
FROM episodic_memory
WHERE event_type IN ('container_restarted', 'container_escalated') AND host = %(host)s
GROUP BY event_type, container
ORDER BY event_type, container;

-- name: page_daily_actions
-- Restarts and escalations (all hosts) per day of a time zone, in [start, end).
SELECT (timestamp AT TIME ZONE %(zone)s)::date AS day, event_type, count(*) AS events
FROM episodic_memory
WHERE event_type IN ('container_restarted', 'container_escalated')
  AND timestamp >= %(start)s AND timestamp < %(end)s
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: page_container_events
-- The latest events about one container of one host, newest first.
SELECT id, uid, timestamp, event_type, summary, details, importance::text AS importance,
       host, source
FROM episodic_memory
WHERE details->>'container' = %(container)s::text
  AND coalesce(details->>'host', host) = %(host)s
ORDER BY timestamp DESC, id DESC
LIMIT %(limit)s;

-- name: page_container_actions
-- Restarts, failed restarts and escalations of one container since a time, per type.
SELECT event_type, count(*) AS events
FROM episodic_memory
WHERE details->>'container' = %(container)s::text
  AND coalesce(details->>'host', host) = %(host)s
  AND event_type IN ('container_restarted', 'container_restart_failed', 'container_escalated')
  AND timestamp >= %(since)s
GROUP BY event_type;

-- name: page_probe_outputs
-- The latest health-probe outputs recorded about one container, newest first.
SELECT timestamp, event_type, details->>'probe_output' AS probe_output,
       details->>'probe_exit_code' AS probe_exit_code
FROM episodic_memory
WHERE details->>'container' = %(container)s::text
  AND details ? 'probe_output' AND details->>'probe_output' <> ''
  AND coalesce(details->>'host', host) = %(host)s
ORDER BY timestamp DESC, id DESC
LIMIT %(limit)s;

-- name: page_latest_probe_outputs
-- The latest health-probe output recorded about each of some containers (host, name).
SELECT c.host, c.name, p.timestamp, p.probe_output
FROM unnest(%(hosts)s::text[], %(names)s::text[]) AS c (host, name)
CROSS JOIN LATERAL (
    SELECT e.timestamp, e.details->>'probe_output' AS probe_output
    FROM episodic_memory e
    WHERE e.details->>'container' = c.name
      AND e.details ? 'probe_output' AND e.details->>'probe_output' <> ''
      AND coalesce(e.details->>'host', e.host) = c.host
    ORDER BY e.timestamp DESC, e.id DESC
    LIMIT 1
) p;

-- name: cleanup_low_events_batch
-- Delete one batch of low-importance events older than the cut-off.
WITH batch AS (
    SELECT id, timestamp
    FROM episodic_memory
    WHERE importance = 'low' AND timestamp < %(cutoff)s AND timestamp >= %(from_time)s
    ORDER BY timestamp
    LIMIT %(batch_rows)s
), deleted AS (
    DELETE FROM episodic_memory e USING batch b
    WHERE e.id = b.id AND e.importance = 'low'
    RETURNING e.id
)
SELECT (SELECT count(*) FROM deleted) AS deleted, (SELECT max(timestamp) FROM batch) AS last_time;
