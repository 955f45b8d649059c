-- compatible-with: 0.1
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
    delivered_at     timestamptz,
    -- identical title, body, importance and channel: repeats are summarised, not reposted
    fingerprint      text,
    -- whether the sender may merge this message with its neighbours into one post
    groupable        boolean NOT NULL DEFAULT true,
    -- a sender's lease while it posts the row; another sender leaves the channel alone
    claimed_by       text,
    claimed_until    timestamptz,
    -- per destination (a hash of its URL): 'delivered' or 'failed: reason'
    target_results   jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- the row whose post carried this one (grouped, or a summarised repeat)
    merged_into      bigint,
    sent_by          text
);

CREATE INDEX outbox_pending_idx ON outbox (channel, id) WHERE status = 'pending';
CREATE INDEX outbox_created_idx ON outbox (created_at);
CREATE INDEX outbox_fingerprint_idx ON outbox (fingerprint, delivered_at)
    WHERE fingerprint IS NOT NULL;

CREATE FUNCTION aegis_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aegis_outbox', NEW.channel);
    RETURN NEW;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION aegis_notify_outbox();
