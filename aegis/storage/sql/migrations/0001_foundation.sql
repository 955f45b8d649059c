-- compatible-with: 0.1
-- State, the episodic event history, and the importance scale.

CREATE TYPE importance AS ENUM ('low', 'medium', 'high', 'critical');

CREATE TABLE state (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE episodic_memory (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid        uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    timestamp  timestamptz NOT NULL DEFAULT now(),
    event_type text NOT NULL,
    summary    text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb,
    importance importance NOT NULL DEFAULT 'low',
    host       text NOT NULL,
    source     text NOT NULL DEFAULT 'aegis'
);

CREATE INDEX episodic_memory_timestamp_idx ON episodic_memory (timestamp);
CREATE INDEX episodic_memory_type_timestamp_idx ON episodic_memory (event_type, timestamp);
CREATE INDEX episodic_memory_importance_timestamp_idx ON episodic_memory (importance, timestamp);
