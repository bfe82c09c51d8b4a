-- The gift card ledger. The invariants the code keeps are enforced here as well:
--   * ledger_entries is append-only: UPDATE, DELETE and TRUNCATE are refused;
--   * each card's entries form a chain: seq 1, 2, 3, ... and balance_after = previous balance_after + amount,
--     so the last balance_after is the sum of all amounts;
--   * cards.current_balance is moved only by inserting a ledger entry (the insert trigger sets it to the
--     entry's balance_after), so it always equals the last balance_after = the sum of the entries;
--   * no balance ever goes below zero (CHECKs), refunds of an invoice never exceed what was redeemed on it;
--   * a card cannot commit without its first entry (deferred constraint trigger).
-- Card numbers are never stored: only an HMAC (number_hmac) and the last 4 characters.

CREATE TABLE cards (
    card_id          text          PRIMARY KEY CHECK (card_id ~ '^gc_[A-Za-z0-9]{22}$'),
    number_hmac      bytea         NOT NULL UNIQUE CHECK (octet_length(number_hmac) = 32),
    key_version      text          NOT NULL,
    last4            text          NOT NULL CHECK (last4 ~ '^[A-Z0-9]{4}$'),
    customer_id      text,
    currency         text          NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    original_balance numeric(16,2) NOT NULL CHECK (original_balance > 0),
    current_balance  numeric(16,2) NOT NULL DEFAULT 0 CHECK (current_balance >= 0),
    issued_at        timestamptz   NOT NULL,
    expires_on       date,
    state            text          NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'expired', 'deactivated')),
    expired_at       timestamptz,
    deactivated_at   timestamptz,
    version          bigint        NOT NULL CHECK (version >= 1),
    last_seq         bigint        NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    issued_via       text          NOT NULL CHECK (issued_via IN ('api', 'pos')),
    updated_at       timestamptz   NOT NULL DEFAULT now(),
    CHECK (state <> 'expired' OR expired_at IS NOT NULL),
    CHECK (state <> 'deactivated' OR deactivated_at IS NOT NULL)
);
CREATE INDEX cards_by_customer ON cards (customer_id, issued_at DESC, card_id DESC);
CREATE INDEX cards_by_expiry ON cards (expires_on, card_id) WHERE state = 'open' AND expires_on IS NOT NULL;

CREATE TABLE ledger_entries (
    card_id                 text          NOT NULL REFERENCES cards (card_id),
    seq                     bigint        NOT NULL CHECK (seq >= 1),
    entry_type              text          NOT NULL CHECK (entry_type IN
                                ('issue', 'activate', 'reload', 'redeem', 'refund', 'adjust', 'expire',
                                 'deactivate', 'assign')),
    amount                  numeric(16,2) NOT NULL,
    balance_after           numeric(16,2) NOT NULL CHECK (balance_after >= 0),
    occurred_at             timestamptz   NOT NULL,
    recorded_at             timestamptz   NOT NULL DEFAULT now(),
    store_id                text,
    invoice_number          text,
    original_invoice_number text,
    customer_id             text,
    actor                   text          NOT NULL,
    reason                  text,
    source                  text          NOT NULL,  -- 'event:<event_id>', 'idem:<Idempotency-Key>', 'sweep:<date>'
    PRIMARY KEY (card_id, seq),
    UNIQUE (card_id, source),
    CHECK (CASE entry_type
               WHEN 'redeem' THEN amount < 0
               WHEN 'adjust' THEN amount <> 0
               WHEN 'expire' THEN amount = 0
               WHEN 'deactivate' THEN amount = 0
               WHEN 'assign' THEN amount = 0
               ELSE amount > 0 END),
    CHECK ((entry_type IN ('issue', 'activate')) = (seq = 1)),
    CHECK ((entry_type = 'refund') = (original_invoice_number IS NOT NULL))
);
CREATE INDEX ledger_redemptions_by_invoice ON ledger_entries (card_id, invoice_number) WHERE entry_type = 'redeem';
CREATE INDEX ledger_refunds_by_invoice ON ledger_entries (card_id, original_invoice_number)
    WHERE entry_type = 'refund';

-- POS events the ledger refused (also announced on giftcards.rejections.v1). Append-only as well.
CREATE TABLE rejections (
    id             bigserial     PRIMARY KEY,
    event_id       uuid          NOT NULL UNIQUE,
    event_type     text          NOT NULL,
    reason         text          NOT NULL,
    detail         text          NOT NULL,
    card_id        text          REFERENCES cards (card_id),
    last4          text          NOT NULL,
    amount         numeric(16,2),
    currency       text,
    store_id       text,
    invoice_number text,
    occurred_at    timestamptz   NOT NULL,
    recorded_at    timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX rejections_by_card ON rejections (card_id, id DESC) WHERE card_id IS NOT NULL;

-- Idempotency of the management API's writes: written in the same transaction as the effect.
-- request_hash is keyed (HMAC), because an issue request may carry a card number.
CREATE TABLE idempotency_keys (
    idempotency_key text        PRIMARY KEY,
    request_hash    bytea       NOT NULL,
    method          text        NOT NULL,
    path            text        NOT NULL,
    status_code     integer,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- --- guards ----------------------------------------------------------------------------------------------

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'check_violation';
END $$;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER rejections_append_only BEFORE UPDATE OR DELETE ON rejections
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER rejections_no_truncate BEFORE TRUNCATE ON rejections
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER cards_no_delete BEFORE DELETE ON cards
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER cards_no_truncate BEFORE TRUNCATE ON cards
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- A new card starts empty; its first ledger entry (issue or activate) puts the balance on it.
CREATE FUNCTION card_insert_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.current_balance <> 0 OR NEW.last_seq <> 0 THEN
        RAISE EXCEPTION 'card %: a new card starts at balance 0; its first ledger entry sets the balance',
            NEW.card_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER cards_insert_guard BEFORE INSERT ON cards FOR EACH ROW EXECUTE FUNCTION card_insert_guard();

-- The balance moves only through the ledger (the entry trigger below, one trigger level deep); what never
-- changes does not change; a deactivated card stays deactivated; the version never goes back.
CREATE FUNCTION card_update_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.current_balance <> OLD.current_balance OR NEW.last_seq <> OLD.last_seq) AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'card %: the balance changes only through ledger entries', OLD.card_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.card_id <> OLD.card_id OR NEW.currency <> OLD.currency OR NEW.original_balance <> OLD.original_balance
       OR NEW.issued_at <> OLD.issued_at OR NEW.last4 <> OLD.last4 OR NEW.issued_via <> OLD.issued_via THEN
        RAISE EXCEPTION 'card %: identity, currency, original balance and issue time never change', OLD.card_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.state = 'deactivated' AND NEW.state <> 'deactivated' THEN
        RAISE EXCEPTION 'card %: deactivation is permanent', OLD.card_id USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.version < OLD.version THEN
        RAISE EXCEPTION 'card %: version % cannot go back to %', OLD.card_id, OLD.version, NEW.version
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER cards_update_guard BEFORE UPDATE ON cards FOR EACH ROW EXECUTE FUNCTION card_update_guard();

-- Every entry continues its card's chain, and moves the card's balance to its balance_after.
CREATE FUNCTION ledger_entry_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    card_balance numeric;
    card_seq     bigint;
    prev_seq     bigint;
    prev_balance numeric;
    redeemed     numeric;
    refunded     numeric;
BEGIN
    SELECT current_balance, last_seq INTO card_balance, card_seq FROM cards WHERE card_id = NEW.card_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger entry for unknown card %', NEW.card_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT seq, balance_after INTO prev_seq, prev_balance
      FROM ledger_entries WHERE card_id = NEW.card_id ORDER BY seq DESC LIMIT 1;
    prev_seq := coalesce(prev_seq, 0);
    prev_balance := coalesce(prev_balance, 0);
    IF card_seq <> prev_seq OR card_balance <> prev_balance THEN
        RAISE EXCEPTION 'card %: balance % (entry %) out of step with its ledger (% after entry %)',
            NEW.card_id, card_balance, card_seq, prev_balance, prev_seq USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.seq <> prev_seq + 1 THEN
        RAISE EXCEPTION 'card %: entry % does not follow entry %', NEW.card_id, NEW.seq, prev_seq
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.balance_after <> prev_balance + NEW.amount THEN
        RAISE EXCEPTION 'card %: balance after % must be % + %', NEW.card_id, NEW.balance_after, prev_balance,
            NEW.amount USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.entry_type = 'refund' THEN
        SELECT coalesce(-sum(amount), 0) INTO redeemed FROM ledger_entries
         WHERE card_id = NEW.card_id AND entry_type = 'redeem' AND invoice_number = NEW.original_invoice_number;
        SELECT coalesce(sum(amount), 0) INTO refunded FROM ledger_entries
         WHERE card_id = NEW.card_id AND entry_type = 'refund'
           AND original_invoice_number = NEW.original_invoice_number;
        IF refunded + NEW.amount > redeemed THEN
            RAISE EXCEPTION 'card %: refunds of invoice % would exceed the % redeemed on it', NEW.card_id,
                NEW.original_invoice_number, redeemed USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    UPDATE cards SET current_balance = NEW.balance_after, last_seq = NEW.seq WHERE card_id = NEW.card_id;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_entries_chain BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_guard();

-- At commit: a card has its first entry, and its balance is its last entry's balance_after.
CREATE FUNCTION card_commit_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c record;
    last_balance numeric;
    first_amount numeric;
BEGIN
    SELECT current_balance, last_seq, original_balance INTO c FROM cards WHERE card_id = NEW.card_id;
    SELECT balance_after INTO last_balance FROM ledger_entries WHERE card_id = NEW.card_id AND seq = c.last_seq;
    SELECT amount INTO first_amount FROM ledger_entries WHERE card_id = NEW.card_id AND seq = 1;
    IF c.last_seq < 1 OR last_balance IS DISTINCT FROM c.current_balance
       OR first_amount IS DISTINCT FROM c.original_balance THEN
        RAISE EXCEPTION 'card %: must commit with its first entry, and its balance equal to its last entry''s',
            NEW.card_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER cards_consistent_at_commit AFTER INSERT ON cards
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION card_commit_check();
