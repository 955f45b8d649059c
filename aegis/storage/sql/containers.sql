-- containers: the strike state of each supervised container. Owned by
-- aegis/supervision/repository.py.
-- The digest_*, status_*, metrics_*, page_* and cleanup_* prefixes: see
-- aegis/storage/queries.py.

-- name: containers_sweep_state
-- What a sweep needs to know of every row of one host to tell whether a container can
-- be left undecided: its version, and whether an incident, a timer or a maintenance
-- window is under way.
SELECT name, container_id, version, phase, next_check_at, removed_at, maintenance_until,
       (SELECT min(r) FROM unnest(restarts) r) AS oldest_restart
FROM containers WHERE host = %(host)s;

-- name: containers_by_names
-- Some container rows of one host.
SELECT * FROM containers WHERE host = %(host)s AND name = ANY(%(names)s::text[]);

-- name: container_by_name
-- One container row.
SELECT * FROM containers WHERE host = %(host)s AND name = %(name)s;

-- name: container_adopt
-- Give a removed container's row (same compose project and service) to its re-created successor.
UPDATE containers SET name = %(name)s, version = version + 1
WHERE host = %(host)s
  AND name = (SELECT name FROM containers
              WHERE host = %(host)s AND removed_at IS NOT NULL
                AND compose_project = %(compose_project)s
                AND compose_service = %(compose_service)s
              ORDER BY removed_at DESC LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM containers WHERE host = %(host)s AND name = %(name)s)
RETURNING *;

-- name: container_adopt_renamed
-- Give the row of a container renamed behind aegis's back (its rename event not handled
-- yet, or missed while the daemon was down) to its new name; found by id.
UPDATE containers SET name = %(name)s, version = version + 1
WHERE host = %(host)s
  AND name = (SELECT name FROM containers
              WHERE host = %(host)s AND container_id = %(container_id)s
              ORDER BY removed_at NULLS FIRST LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM containers WHERE host = %(host)s AND name = %(name)s)
RETURNING *;

-- name: container_insert
-- A container seen for the first time; nothing when another process inserted it first.
INSERT INTO containers (host, name, container_id, image, compose_project, compose_service,
                        status, health, has_healthcheck, seen_at)
VALUES (%(host)s, %(name)s, %(container_id)s, %(image)s, %(compose_project)s,
        %(compose_service)s, %(status)s, %(health)s, %(has_healthcheck)s, %(seen_at)s)
ON CONFLICT (host, name) DO NOTHING;

-- name: container_save
-- Write what was observed and decided, only if nobody changed the row since it was read;
-- with an event (event_uid set), record it in the same statement, only if the row was
-- written: a decision with one event is one round trip, atomic without a transaction.
WITH saved AS (
UPDATE containers SET
    container_id = %(container_id)s, image = %(image)s,
    compose_project = %(compose_project)s, compose_service = %(compose_service)s,
    status = %(status)s, health = %(health)s, has_healthcheck = %(has_healthcheck)s,
    supervision = %(supervision)s, state = %(state)s, phase = %(phase)s,
    strikes = %(strikes)s, incident = %(incident)s, strike_at = %(strike_at)s,
    healthy_since = %(healthy_since)s, restarts = %(restarts)s::timestamptz[],
    maintenance_label = %(maintenance_label)s, label_problems = %(label_problems)s::text[],
    labels = %(labels)s,
    last_action = coalesce(%(last_action)s, last_action),
    last_action_at = coalesce(%(last_action_at)s, last_action_at),
    last_reason = coalesce(%(last_reason)s, last_reason),
    next_check_at = %(next_check_at)s, seen_at = %(seen_at)s, removed_at = NULL,
    stopped_by_user = %(stopped_by_user)s, stop_requested_at = %(stop_requested_at)s,
    incident_class = %(incident_class)s, incident_log = %(incident_log)s,
    folded_into = %(folded_into)s, affected = %(affected)s::text[],
    docker_restarts = %(docker_restarts)s, oom_restart_at = %(oom_restart_at)s,
    climbed_at = %(climbed_at)s, version = version + 1
WHERE host = %(host)s AND name = %(name)s AND version = %(version)s
RETURNING version
), recorded AS (
    INSERT INTO episodic_memory (uid, timestamp, event_type, summary, details, importance,
                                 host, source)
    SELECT %(event_uid)s::uuid, %(event_timestamp)s::timestamptz, %(event_type)s::text,
           %(event_summary)s::text, %(event_details)s::jsonb,
           %(event_importance)s::importance, %(event_host)s::text, %(event_source)s::text
    FROM saved
    WHERE %(event_uid)s::uuid IS NOT NULL
    ON CONFLICT (uid) DO NOTHING
)
SELECT version FROM saved;

-- name: containers_next_due
-- The earliest strike timer of this host still ahead.
SELECT min(next_check_at) AS next_check_at FROM containers
WHERE host = %(host)s AND next_check_at > %(now)s AND removed_at IS NULL;

-- name: containers_restart_unrecorded
-- The latest restart decided for each container (saved before Docker was asked) when no
-- event records its outcome: the daemon deciding it stopped in between.
SELECT c.*, last.restart_at FROM containers c
CROSS JOIN LATERAL (SELECT max(r) AS restart_at FROM unnest(c.restarts) r) last
WHERE c.host = %(host)s AND c.removed_at IS NULL AND last.restart_at IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM episodic_memory e
      WHERE e.event_type IN ('container_restarted', 'container_restart_failed',
                             'container_recreated', 'container_recreate_failed',
                             'container_stack_restarted')
        AND e.timestamp >= last.restart_at AND e.host = c.host
        AND e.details->>'container' = c.name);

-- name: container_restore
-- A decision made while PostgreSQL was unreachable, written back from the spool.
INSERT INTO containers AS c (
    host, name, container_id, image, compose_project, compose_service, status, health,
    has_healthcheck, supervision, state, phase, strikes, incident, strike_at, healthy_since,
    restarts, maintenance_label, label_problems, labels, last_action, last_action_at,
    last_reason, next_check_at, seen_at, incident_class, incident_log, folded_into, affected,
    docker_restarts, oom_restart_at, climbed_at)
VALUES (
    %(host)s, %(name)s, %(container_id)s, %(image)s, %(compose_project)s,
    %(compose_service)s, %(status)s, %(health)s, %(has_healthcheck)s, %(supervision)s,
    %(state)s, %(phase)s, %(strikes)s, %(incident)s, %(strike_at)s, %(healthy_since)s,
    %(restarts)s::timestamptz[], %(maintenance_label)s, %(label_problems)s::text[],
    coalesce(%(labels)s::jsonb, '{}'::jsonb), %(last_action)s, %(last_action_at)s,
    %(last_reason)s, %(next_check_at)s, %(seen_at)s,
    %(incident_class)s, %(incident_log)s, %(folded_into)s, %(affected)s::text[],
    %(docker_restarts)s, %(oom_restart_at)s, %(climbed_at)s)
ON CONFLICT (host, name) DO UPDATE SET
    container_id = EXCLUDED.container_id, image = EXCLUDED.image,
    compose_project = EXCLUDED.compose_project, compose_service = EXCLUDED.compose_service,
    status = EXCLUDED.status, health = EXCLUDED.health,
    has_healthcheck = EXCLUDED.has_healthcheck, supervision = EXCLUDED.supervision,
    state = EXCLUDED.state, phase = EXCLUDED.phase, strikes = EXCLUDED.strikes,
    incident = EXCLUDED.incident, strike_at = EXCLUDED.strike_at,
    healthy_since = EXCLUDED.healthy_since, restarts = EXCLUDED.restarts,
    maintenance_label = EXCLUDED.maintenance_label, label_problems = EXCLUDED.label_problems,
    labels = EXCLUDED.labels,
    last_action = coalesce(EXCLUDED.last_action, c.last_action),
    last_action_at = coalesce(EXCLUDED.last_action_at, c.last_action_at),
    last_reason = coalesce(EXCLUDED.last_reason, c.last_reason),
    next_check_at = EXCLUDED.next_check_at, seen_at = EXCLUDED.seen_at, removed_at = NULL,
    incident_class = EXCLUDED.incident_class, incident_log = EXCLUDED.incident_log,
    folded_into = EXCLUDED.folded_into, affected = EXCLUDED.affected,
    docker_restarts = EXCLUDED.docker_restarts, oom_restart_at = EXCLUDED.oom_restart_at,
    climbed_at = EXCLUDED.climbed_at, version = c.version + 1;

-- name: containers_due
-- Names of this host's containers whose strike timer has come due.
SELECT name, container_id FROM containers
WHERE host = %(host)s AND next_check_at IS NOT NULL AND next_check_at <= %(now)s
  AND removed_at IS NULL
ORDER BY next_check_at;

-- name: container_set_stopped
-- Remember that (and when) a person or a tool asked Docker to stop the container, or
-- that it started again.
UPDATE containers
SET stopped_by_user = %(stopped)s,
    stop_requested_at = CASE WHEN %(stopped)s::boolean THEN %(now)s::timestamptz END,
    version = version + 1
WHERE host = %(host)s AND container_id = %(container_id)s;

-- name: container_mark_removed
-- The container was destroyed; its row (and strike history) stays for a re-created successor.
UPDATE containers SET removed_at = %(now)s, status = 'removed', next_check_at = NULL,
                      version = version + 1
WHERE host = %(host)s AND container_id = %(container_id)s AND removed_at IS NULL;

-- name: container_rename
-- Follow a docker rename, unless the new name already has a row.
UPDATE containers SET name = %(new_name)s, version = version + 1
WHERE host = %(host)s AND name = %(old_name)s
  AND NOT EXISTS (SELECT 1 FROM containers WHERE host = %(host)s AND name = %(new_name)s);

-- name: container_ack
-- A person takes over an escalation: strikes reset, the restart budget is kept; the
-- incident's log ends with the acknowledgement.
UPDATE containers SET phase = 'ok', strikes = 0, strike_at = NULL, healthy_since = NULL,
       next_check_at = NULL, folded_into = NULL, incident_log = %(incident_log)s,
       state = CASE WHEN state IN ('escalated', 'striking', 'restarting') THEN 'ok' ELSE state END,
       last_action = 'ack', last_action_at = %(now)s, last_reason = %(reason)s,
       version = version + 1
WHERE host = %(host)s AND name = %(name)s
RETURNING phase, incident;

-- name: container_lock
-- One container row, locked until the transaction ends (steps of its incident are
-- written one after the other, and its living message's edits follow them in order).
SELECT * FROM containers WHERE host = %(host)s AND name = %(name)s FOR UPDATE;

-- name: containers_recent_incidents
-- The open incidents of a host's containers that began at or after a time, not folded into
-- another's (storm detection: aegis/supervision/storms.py).
SELECT name, incident, incident_log FROM containers
WHERE host = %(host)s AND phase <> 'ok' AND removed_at IS NULL AND folded_into IS NULL
  AND jsonb_array_length(incident_log) > 0
  AND (incident_log -> 0 ->> 'at')::timestamptz >= %(since)s
ORDER BY (incident_log -> 0 ->> 'at')::timestamptz, name;

-- name: container_set_log
-- The open incident's log (and the dependants folded into it), after a step taken
-- outside a decision: a restart made, a dependant folded in.
UPDATE containers SET incident_log = %(incident_log)s, affected = %(affected)s::text[],
                      version = version + 1
WHERE host = %(host)s AND name = %(name)s AND incident = %(incident)s
RETURNING *;

-- name: container_open_parent
-- The container another one depends on (its network namespace's owner, or a compose
-- service of its project it depends on) when that one is in an open incident.
SELECT name, folded_into FROM containers
WHERE host = %(host)s AND removed_at IS NULL AND phase <> 'ok' AND name <> %(name)s
  AND (container_id = %(network_parent)s OR name = %(network_parent)s
       OR (compose_project = %(compose_project)s AND compose_service = ANY(%(services)s)))
ORDER BY name
LIMIT 1;

-- name: container_note_oom
-- The engine reported an OOM kill inside the container.
UPDATE containers SET oom_at = %(now)s
WHERE host = %(host)s AND container_id = %(container_id)s;

-- name: container_maintenance
-- Pause (until a time) or resume action on a container this host has a row for; nothing
-- (no row returned) for a name it has never seen.
UPDATE containers SET maintenance_until = %(until)s, last_action = %(action)s,
                      last_action_at = %(now)s, version = version + 1
WHERE host = %(host)s AND name = %(name)s
RETURNING *;

-- name: containers_listing
-- Present containers of one host (or of every host), for aegis containers.
SELECT * FROM containers
WHERE removed_at IS NULL AND (%(host)s::text IS NULL OR host = %(host)s)
ORDER BY host, name;

-- name: status_maintenance_containers
-- Containers in maintenance now: by label, or by `aegis maintenance` until a time.
SELECT host, name AS container
FROM containers
WHERE removed_at IS NULL
  AND (state = 'maintenance' OR maintenance_label OR maintenance_until > %(as_of)s)
ORDER BY host, name
LIMIT %(limit)s;

-- name: fleet_containers
-- Per host: its present containers, how many are supervised, how many unhealthy, how many
-- in an incident (struck, restarting or escalated), and how many incidents are open (a
-- dependant folded into its parent's incident is in that one, not one of its own).
SELECT host,
       count(*) AS containers,
       count(*) FILTER (WHERE supervision = 'supervised') AS supervised,
       count(*) FILTER (WHERE health = 'unhealthy') AS unhealthy,
       count(*) FILTER (WHERE phase <> 'ok') AS in_incident,
       count(*) FILTER (WHERE phase <> 'ok' AND folded_into IS NULL) AS incidents
FROM containers
WHERE removed_at IS NULL
GROUP BY host;

-- name: metrics_has_containers
-- Whether the containers table (strike state) exists yet.
SELECT to_regclass('containers') IS NOT NULL AS present;

-- name: metrics_containers
-- This host's present containers: name, state, current strikes, what Docker last reported
-- of their health, and where their incident stands.
SELECT name, state, strikes, supervision, status, health, has_healthcheck, phase,
       folded_into
FROM containers
WHERE host = %(host)s AND removed_at IS NULL
ORDER BY name;

-- name: page_containers_of_note
-- Present containers of every host that are in an incident, unhealthy, struck or in
-- maintenance: escalated first, then restarting and striking, then by host and name.
SELECT * FROM containers
WHERE removed_at IS NULL
  AND (phase <> 'ok' OR health = 'unhealthy' OR strikes > 0 OR state = 'maintenance'
       OR maintenance_label OR maintenance_until > %(as_of)s)
ORDER BY CASE phase WHEN 'escalated' THEN 0 WHEN 'restarting' THEN 1
                    WHEN 'striking' THEN 2 ELSE 3 END,
         strike_at NULLS LAST, host, name
LIMIT %(limit)s;

-- name: cleanup_containers_batch
-- Delete one batch of rows of containers removed from Docker before the cut-off (a
-- container re-created since has taken its row back: removed_at is NULL again).
WITH batch AS (
    SELECT host, name, removed_at
    FROM containers
    WHERE removed_at < %(cutoff)s AND removed_at >= %(from_time)s
    ORDER BY removed_at
    LIMIT %(batch_rows)s
), deleted AS (
    DELETE FROM containers c USING batch b
    WHERE c.host = b.host AND c.name = b.name AND c.removed_at < %(cutoff)s
    RETURNING c.name
)
SELECT (SELECT count(*) FROM deleted) AS deleted,
       (SELECT max(removed_at) FROM batch) AS last_time;
