-- The status page: the aegis.* labels each container was last seen with (its page shows
-- the labels in effect), and an index on the container an event is about (a container's
-- page, and the container filter of the events page and of `aegis events`).

ALTER TABLE containers ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE INDEX episodic_memory_container_timestamp_idx
    ON episodic_memory ((details->>'container'), timestamp);
