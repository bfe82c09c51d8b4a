-- Customer facts, segments (versioned rules), memberships and their history, evaluation jobs.

-- Customers: known from the CRM or first seen in a sale. Facts about the person, and two counters:
-- facts_version grows with every applied event (a job uses it to spot customers that changed under it);
-- segments_version is the version of the customer's CustomerSegmentsChanged events.
ALTER TABLE customers
    ADD COLUMN signup_day        date,
    ADD COLUMN registration_at   timestamptz,  -- occurred_at of the registration applied (latest wins)
    ADD COLUMN tier_at           timestamptz,  -- occurred_at of the tier applied (latest wins)
    ADD COLUMN facts_version     bigint      NOT NULL DEFAULT 0,
    ADD COLUMN created_at        timestamptz NOT NULL DEFAULT now();

-- One row per invoice a sale event, a void or a return mentioned, whatever order they came in.
-- A void or return that arrives before its sale leaves a row without the sale (has_sale = false);
-- the sale fills it in later and the aggregates below see the net result.
CREATE TABLE invoices (
    invoice_number  text          PRIMARY KEY,
    customer_id     text,
    store_id        text,
    business_day    date,         -- occurred_at of the sale in the business time zone
    occurred_at     timestamptz,
    total           numeric(14,2) NOT NULL DEFAULT 0,
    units           integer       NOT NULL DEFAULT 0,
    categories      text[]        NOT NULL DEFAULT '{}',
    has_sale        boolean       NOT NULL DEFAULT false,
    voided          boolean       NOT NULL DEFAULT false,
    returned_total  numeric(14,2) NOT NULL DEFAULT 0,
    returned_units  integer       NOT NULL DEFAULT 0,
    -- What a purchase and net spend are (services/segment_engine/facts.py says the same in Python):
    counted         boolean       GENERATED ALWAYS AS (has_sale AND NOT voided) STORED,
    is_purchase     boolean       GENERATED ALWAYS AS (has_sale AND NOT voided AND returned_units < units) STORED,
    net_spend       numeric(14,2) GENERATED ALWAYS AS (
                        CASE WHEN has_sale AND NOT voided THEN greatest(total - returned_total, 0) ELSE 0 END
                    ) STORED
);
CREATE INDEX invoices_by_customer ON invoices (customer_id, business_day);

-- Returns, by their own invoice number: a return re-sent with a new event id is still applied once.
CREATE TABLE invoice_returns (
    return_invoice_number   text          PRIMARY KEY,
    original_invoice_number text          NOT NULL,
    customer_id             text,
    refund_total            numeric(14,2) NOT NULL,
    units                   integer       NOT NULL,
    occurred_at             timestamptz   NOT NULL
);

CREATE TABLE segments (
    segment_id   text        PRIMARY KEY,
    name         text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    rule         jsonb       NOT NULL,
    version      integer     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX segments_name ON segments (lower(name));

-- Every version of every segment, kept after a delete (a re-created segment continues its numbering).
CREATE TABLE segment_versions (
    segment_id   text        NOT NULL,
    version      integer     NOT NULL,
    name         text        NOT NULL,
    description  text        NOT NULL,
    rule         jsonb       NOT NULL,
    rule_changed boolean     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, version)
);

-- Current state of a (segment, customer) pair. A customer is a member when manual, or when the rule
-- matches and no exclusion stands. Rows with nothing to say (no match, not manual, not excluded) are deleted.
CREATE TABLE memberships (
    segment_id    text        NOT NULL REFERENCES segments ON DELETE CASCADE,
    customer_id   text        NOT NULL,
    rule_match    boolean     NOT NULL DEFAULT false,
    match_notes   text        NOT NULL DEFAULT '',
    manual        boolean     NOT NULL DEFAULT false,
    manual_notes  text        NOT NULL DEFAULT '',
    excluded      boolean     NOT NULL DEFAULT false,
    member_since  date,       -- business day the current continuous membership began (NULL: not a member)
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, customer_id),
    CONSTRAINT members_have_a_start CHECK (NOT (manual OR (rule_match AND NOT excluded)) OR member_since IS NOT NULL)
);
CREATE INDEX memberships_by_customer ON memberships (customer_id);

-- Every entry and exit (and manual change of an existing membership), append-only.
CREATE TABLE membership_history (
    id              bigserial   PRIMARY KEY,
    segment_id      text        NOT NULL,
    segment_name    text        NOT NULL,
    segment_version integer,
    customer_id     text        NOT NULL,
    action          text        NOT NULL CHECK (action IN ('entered', 'exited', 'changed')),
    reason          text        NOT NULL CHECK (reason IN ('rule_matched', 'rule_stopped_matching', 'rule_changed',
                                    'time_passed', 'manual_add', 'manual_removal', 'exclusion_cleared',
                                    'segment_deleted')),
    assigned_by     text,
    notes           text        NOT NULL DEFAULT '',
    business_day    date        NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX membership_history_by_customer ON membership_history (customer_id, id);
CREATE INDEX membership_history_by_segment ON membership_history (segment_id, id);

-- Set-based evaluations: a backfill after a rule is created or changed, a sweep as time passes.
CREATE TABLE evaluation_jobs (
    job_id          bigserial   PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('backfill', 'sweep')),
    segment_id      text,
    segment_version integer,
    reason          text        NOT NULL,
    as_of           timestamptz,              -- NULL: the clock's now when the job starts
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'running', 'done', 'failed', 'superseded')),
    phase           text        NOT NULL DEFAULT 'queued',
    total           bigint      NOT NULL DEFAULT 0,
    processed       bigint      NOT NULL DEFAULT 0,
    entered         bigint      NOT NULL DEFAULT 0,
    exited          bigint      NOT NULL DEFAULT 0,
    customers_changed bigint    NOT NULL DEFAULT 0,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX evaluation_jobs_open ON evaluation_jobs (job_id) WHERE status IN ('pending', 'running');
CREATE INDEX evaluation_jobs_by_segment ON evaluation_jobs (segment_id, job_id);

-- Small facts about the engine itself (e.g. whether the default segments were ever loaded).
CREATE TABLE engine_state (
    key         text        PRIMARY KEY,
    value       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
