-- compatible-with: 0.1
-- The status page: the aegis.* labels each container was last seen with (its page shows
-- the labels in effect); an index on the container an event is about (a container's
-- page, and the container filter of the events page and of `aegis events`), and a small
-- one on the events that carry a health probe's output (restarts and escalations), so
-- the latest output of a container with a long history is one index probe.

ALTER TABLE containers ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE INDEX episodic_memory_container_timestamp_idx
    ON episodic_memory ((details->>'container'), timestamp);

CREATE INDEX episodic_memory_probe_output_idx
    ON episodic_memory ((details->>'container'), timestamp)
    WHERE details ? 'probe_output';
