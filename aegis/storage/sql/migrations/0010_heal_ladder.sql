-- compatible-with: 0.1
-- The healing ladder: when the open incident took its rung above a restart (a recreate, or
-- a restart of its compose project), taken at most once per incident.

ALTER TABLE containers
    ADD COLUMN climbed_at timestamptz;
