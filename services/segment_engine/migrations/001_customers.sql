-- Customers known to the segment engine, from crm.customers.v1.
CREATE TABLE customers (
    customer_id    text        PRIMARY KEY,
    registered_at  timestamptz,
    home_store_id  text,
    loyalty_tier   text,
    -- Grows with every change of the customer's segment list; the version of its domain events.
    segments_version bigint    NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
