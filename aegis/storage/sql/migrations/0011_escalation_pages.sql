-- compatible-with: 0.1
-- The escalation route: the pages sent for each escalation nobody acknowledged within
-- AEGIS_ESCALATE_AFTER. When one is due is read from the containers row (an escalated
-- incident's escalation line), so the delay survives any restart of aegis; this row says
-- how many pages went out and when, and guards each against a second daemon.

CREATE TABLE escalation_pages (
    host         text NOT NULL,
    container    text NOT NULL,
    incident     integer NOT NULL,
    -- the escalation paged for (an incident acknowledged and escalated again pages anew)
    escalated_at timestamptz NOT NULL,
    pages        integer NOT NULL,
    paged_at     timestamptz NOT NULL,
    PRIMARY KEY (host, container, incident, escalated_at)
);

CREATE INDEX containers_escalated_idx ON containers (host, name) WHERE phase = 'escalated';
