-- escalation_pages: the escalation route's pages. Owned by aegis/supervision/escalation.py.
-- The cleanup_* prefix: see aegis/storage/queries.py.

-- name: escalation_due
-- Escalated incidents of every host whose next page is due: none sent and the escalation
-- older than the delay, or (with a repeat) the last one older than the repeat. Their
-- containers rows are locked, so an acknowledgement or a recovery waits for the page's
-- transaction (and one another daemon is paging is skipped).
SELECT c.host, c.name, c.incident, e.escalated_at, coalesce(p.pages, 0) AS pages
FROM containers c
CROSS JOIN LATERAL (
    SELECT max((line->>'at')::timestamptz) AS escalated_at
    FROM jsonb_array_elements(c.incident_log) AS line
    WHERE line->>'step' = 'escalated'
) e
LEFT JOIN escalation_pages p
    ON p.host = c.host AND p.container = c.name AND p.incident = c.incident
   AND p.escalated_at = e.escalated_at
WHERE c.phase = 'escalated' AND c.removed_at IS NULL AND e.escalated_at IS NOT NULL
  AND e.escalated_at <= %(escalated_before)s
  AND (p.pages IS NULL
       OR (%(paged_before)s::timestamptz IS NOT NULL AND p.paged_at <= %(paged_before)s))
ORDER BY e.escalated_at, c.host, c.name
LIMIT %(limit)s
FOR UPDATE OF c SKIP LOCKED;

-- name: escalation_next_due
-- When the earliest escalation still waiting becomes due (the delay, or the repeat).
SELECT min(CASE WHEN p.pages IS NULL THEN e.escalated_at + %(after_s)s * interval '1 second'
                ELSE p.paged_at + %(repeat_s)s * interval '1 second' END) AS due_at
FROM containers c
CROSS JOIN LATERAL (
    SELECT max((line->>'at')::timestamptz) AS escalated_at
    FROM jsonb_array_elements(c.incident_log) AS line
    WHERE line->>'step' = 'escalated'
) e
LEFT JOIN escalation_pages p
    ON p.host = c.host AND p.container = c.name AND p.incident = c.incident
   AND p.escalated_at = e.escalated_at
WHERE c.phase = 'escalated' AND c.removed_at IS NULL AND e.escalated_at IS NOT NULL
  AND (p.pages IS NULL OR %(repeat_s)s > 0);

-- name: escalation_page_claim
-- Count one more page of an escalation, only if nobody counted it since it was read (the
-- number of pages expected): the page's number, or nothing.
INSERT INTO escalation_pages AS p (host, container, incident, escalated_at, pages, paged_at)
VALUES (%(host)s, %(container)s, %(incident)s, %(escalated_at)s, 1, %(now)s)
ON CONFLICT (host, container, incident, escalated_at) DO UPDATE
SET pages = p.pages + 1, paged_at = EXCLUDED.paged_at
WHERE p.pages = %(pages)s
RETURNING pages;

-- name: cleanup_escalation_pages_batch
-- Delete one batch of the pages of escalations made before the cut-off whose incident is
-- over (an incident still escalated keeps them: deleting them would page it again).
WITH batch AS (
    SELECT host, container, incident, escalated_at
    FROM escalation_pages p
    WHERE escalated_at < %(cutoff)s AND escalated_at >= %(from_time)s
      AND NOT EXISTS (SELECT 1 FROM containers c
                      WHERE c.host = p.host AND c.name = p.container
                        AND c.incident = p.incident AND c.phase = 'escalated')
    ORDER BY escalated_at
    LIMIT %(batch_rows)s
), deleted AS (
    DELETE FROM escalation_pages p USING batch b
    WHERE p.host = b.host AND p.container = b.container AND p.incident = b.incident
      AND p.escalated_at = b.escalated_at
    RETURNING p.host
)
SELECT (SELECT count(*) FROM deleted) AS deleted,
       (SELECT max(escalated_at) FROM batch) AS last_time;
