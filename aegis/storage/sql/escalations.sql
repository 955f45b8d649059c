-- escalation_pages: the escalation route's pages. Owned by aegis/supervision/escalation.py.

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
