-- compatible-with: 0.1
-- Supervised containers: identity, what Docker last reported, and the strike state of the
-- three-strike protocol, keyed by host and container name so a re-created container (same
-- compose project and service) keeps its history.

CREATE TABLE containers (
    host              text NOT NULL,
    name              text NOT NULL,
    container_id      text NOT NULL DEFAULT '',
    image             text NOT NULL DEFAULT '',
    compose_project   text,
    compose_service   text,
    status            text NOT NULL DEFAULT '',
    health            text NOT NULL DEFAULT 'none',
    has_healthcheck   boolean NOT NULL DEFAULT false,
    supervision       text NOT NULL DEFAULT 'supervised'
                      CHECK (supervision IN ('supervised', 'protected', 'ignored')),
    state             text NOT NULL DEFAULT 'ok'
                      CHECK (state IN ('ok', 'striking', 'restarting', 'escalated',
                                       'maintenance', 'protected', 'ignored')),
    phase             text NOT NULL DEFAULT 'ok'
                      CHECK (phase IN ('ok', 'striking', 'restarting', 'escalated')),
    strikes           integer NOT NULL DEFAULT 0,
    incident          integer NOT NULL DEFAULT 0,
    strike_at         timestamptz,
    healthy_since     timestamptz,
    restarts          timestamptz[] NOT NULL DEFAULT '{}',
    stopped_by_user   boolean NOT NULL DEFAULT false,
    maintenance_label boolean NOT NULL DEFAULT false,
    maintenance_until timestamptz,
    label_problems    text[] NOT NULL DEFAULT '{}',
    last_action       text,
    last_action_at    timestamptz,
    last_reason       text,
    next_check_at     timestamptz,
    seen_at           timestamptz,
    removed_at        timestamptz,
    version           bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (host, name)
);

CREATE INDEX containers_id_idx ON containers (host, container_id);
CREATE INDEX containers_due_idx ON containers (host, next_check_at)
    WHERE next_check_at IS NOT NULL;
CREATE INDEX containers_compose_idx ON containers (host, compose_project, compose_service);
