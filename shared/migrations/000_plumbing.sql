-- Inbox and outbox, created in every service's schema (the search_path points at it).

-- Inbox: the id of every message a consumer applied, written in the same transaction as the change.
CREATE TABLE IF NOT EXISTS processed_messages (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Outbox: events written in the same transaction as the change; the relay publishes then deletes them.
CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
