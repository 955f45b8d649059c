-- The durable outbox: every notification is a row, written in the same transaction as
-- the event that caused it, and delivered by the sender in order per channel.

CREATE TABLE outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel          text NOT NULL,
    dedup_key        text NOT NULL UNIQUE,
    host             text NOT NULL,
    event_uid        uuid,
    title            text NOT NULL,
    body             text NOT NULL DEFAULT '',
    importance       importance NOT NULL DEFAULT 'medium',
    fields           jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed', 'undeliverable')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);

CREATE INDEX outbox_pending_idx ON outbox (channel, id) WHERE status = 'pending';
CREATE INDEX outbox_created_idx ON outbox (created_at);
