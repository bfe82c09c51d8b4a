-- The coupon catalog and the append-only redemption ledger (SPEC §2.2, §4).
-- Coupon codes are stored normalised (trimmed, upper-case): that is what makes them case-insensitive.

-- Refuses any change to a row once written: the ledger tables are append-only.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END;
$$;

-- The catalog as it stands now (staff edit it; the history of every edit is in coupon_revisions).
CREATE TABLE coupons (
    code                          text        PRIMARY KEY CHECK (code = upper(btrim(code)) AND code <> ''),
    name                          text        NOT NULL,
    discount_type                 text        NOT NULL CHECK (discount_type IN ('amount', 'percent')),
    discount_value                numeric(12, 2) NOT NULL CHECK (discount_value > 0),
    currency                      text,
    campaign                      text,
    valid_from                    timestamptz,
    valid_until                   timestamptz,
    max_redemptions               integer     CHECK (max_redemptions > 0),
    max_redemptions_per_customer  integer     CHECK (max_redemptions_per_customer > 0),
    active                        boolean     NOT NULL,
    revision                      integer     NOT NULL,
    created_at                    timestamptz NOT NULL,
    updated_at                    timestamptz NOT NULL,
    CHECK (discount_type <> 'percent' OR discount_value <= 100),
    CHECK ((discount_type = 'amount') = (currency IS NOT NULL)),
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from < valid_until)
);
CREATE INDEX coupons_campaign ON coupons (campaign, code);

-- Every version of every coupon, append-only: a redemption takes the terms in force when it was used.
CREATE TABLE coupon_revisions (
    code                          text        NOT NULL,
    revision                      integer     NOT NULL,
    recorded_at                   timestamptz NOT NULL,
    change                        text        NOT NULL,  -- create, update, deactivate, activate
    name                          text        NOT NULL,
    discount_type                 text        NOT NULL,
    discount_value                numeric(12, 2) NOT NULL,
    currency                      text,
    campaign                      text,
    valid_from                    timestamptz,
    valid_until                   timestamptz,
    max_redemptions               integer,
    max_redemptions_per_customer  integer,
    active                        boolean     NOT NULL,
    actor                         text,
    PRIMARY KEY (code, revision)
);
CREATE TRIGGER coupon_revisions_append_only BEFORE UPDATE OR DELETE ON coupon_revisions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER coupon_revisions_no_truncate BEFORE TRUNCATE ON coupon_revisions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- One entry per redemption: (invoice_number, coupon_code) identifies it. The coupon's terms are a snapshot.
CREATE TABLE redemptions (
    redemption_id     text        PRIMARY KEY,
    seq               bigserial   NOT NULL UNIQUE,           -- order of recording
    invoice_number    text        NOT NULL,
    coupon_code       text        NOT NULL,                  -- normalised
    pos_coupon_code   text        NOT NULL,                  -- as the POS sent it
    customer_id       text,                                  -- null: anonymous sale
    store_id          text        NOT NULL,
    register_id       text        NOT NULL,
    used_at           timestamptz NOT NULL,                  -- the POS's occurred_at
    discount_amount   numeric(14, 2) NOT NULL,               -- money actually applied
    currency          text        NOT NULL,
    coupon_name       text        NOT NULL,                  -- snapshot: '' when the code was unknown
    discount_type     text        NOT NULL CHECK (discount_type IN ('amount', 'percent', 'unknown')),
    discount_value    numeric(12, 2),                        -- snapshot: null when unknown
    coupon_currency   text,
    campaign          text,
    coupon_revision   integer,
    flags             text[]      NOT NULL DEFAULT '{}',     -- catalog rules it broke
    source_event_id   uuid        NOT NULL UNIQUE,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (invoice_number, coupon_code)
);
CREATE INDEX redemptions_customer ON redemptions (customer_id, used_at DESC, redemption_id DESC)
    WHERE customer_id IS NOT NULL;
CREATE INDEX redemptions_coupon ON redemptions (coupon_code);
CREATE INDEX redemptions_campaign ON redemptions (campaign) WHERE campaign IS NOT NULL;
CREATE INDEX redemptions_flagged ON redemptions (used_at DESC, redemption_id DESC) WHERE flags <> '{}';
CREATE TRIGGER redemptions_append_only BEFORE UPDATE OR DELETE ON redemptions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER redemptions_no_truncate BEFORE TRUNCATE ON redemptions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- A reversal entry gives a redemption's usage back. At most one per redemption: a void and a reversal of
-- the same redemption reverse it once.
CREATE TABLE redemption_reversals (
    redemption_id     text        PRIMARY KEY REFERENCES redemptions (redemption_id),
    seq               bigserial   NOT NULL UNIQUE,
    reason            text        NOT NULL,                  -- void, return, correction
    source            text        NOT NULL CHECK (source IN ('coupon.redemption_reversed', 'sale.voided')),
    source_event_id   uuid        NOT NULL,
    reversed_at       timestamptz NOT NULL,                  -- the POS's occurred_at of the reversal
    store_id          text,
    held_since        timestamptz,                           -- set when it arrived before its redemption
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER redemption_reversals_append_only BEFORE UPDATE OR DELETE ON redemption_reversals
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER redemption_reversals_no_truncate BEFORE TRUNCATE ON redemption_reversals
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- coupon.redemption_reversed events that arrived before their redemption; matched when it arrives.
CREATE TABLE held_reversals (
    invoice_number    text        NOT NULL,
    coupon_code       text        NOT NULL,
    reason            text        NOT NULL,
    source_event_id   uuid        NOT NULL UNIQUE,
    occurred_at       timestamptz NOT NULL,
    store_id          text,
    customer_id       text,
    received_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (invoice_number, coupon_code)
);
CREATE TRIGGER held_reversals_append_only BEFORE UPDATE OR DELETE ON held_reversals
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Voided sales (pos.sales.v1 sale.voided): every coupon redeemed on the invoice, now or later, is reversed.
CREATE TABLE voided_invoices (
    invoice_number    text        PRIMARY KEY,
    reason            text        NOT NULL,
    source_event_id   uuid        NOT NULL UNIQUE,
    occurred_at       timestamptz NOT NULL,
    store_id          text,
    customer_id       text,
    received_at       timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER voided_invoices_append_only BEFORE UPDATE OR DELETE ON voided_invoices
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Net usage (redemptions minus reversals) per code (customer_id '') and per code and customer.
-- Derived from the ledger, kept in step with it in the same transaction; the row lock makes limits race-free.
CREATE TABLE usage_counters (
    coupon_code       text        NOT NULL,
    customer_id       text        NOT NULL,                  -- '' = every customer (the coupon's total)
    used              integer     NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (coupon_code, customer_id)
);

-- Price sensitivity: the purchases of identified customers (pos.sales.v1 sale.completed).
CREATE TABLE customer_purchases (
    invoice_number    text        PRIMARY KEY,
    customer_id       text        NOT NULL,
    occurred_at       timestamptz NOT NULL,
    with_coupon       boolean     NOT NULL,
    store_id          text        NOT NULL,
    source_event_id   uuid        NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_purchases_customer ON customer_purchases (customer_id, occurred_at);
CREATE INDEX customer_purchases_time ON customer_purchases (occurred_at);

-- What was last published per customer (the version of CustomerCouponInsightsChanged).
CREATE TABLE customer_insights (
    customer_id            text        PRIMARY KEY,
    version                integer     NOT NULL DEFAULT 0,
    window_days            integer     NOT NULL DEFAULT 0,
    purchases              integer     NOT NULL DEFAULT 0,
    purchases_with_coupon  integer     NOT NULL DEFAULT 0,
    coupon_share           numeric(5, 4) NOT NULL DEFAULT 0,
    coupon_only_buyer      boolean     NOT NULL DEFAULT false,
    computed_at            timestamptz NOT NULL DEFAULT now()
);

-- How far the insights sweep has aged the windows (one row).
CREATE TABLE insights_sweep (
    singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    swept_cutoff   timestamptz                               -- null: never swept
);
