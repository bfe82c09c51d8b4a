-- The ledger chain, checked once per INSERT statement instead of once per row (a polled batch appends
-- hundreds of entries in one statement). Same guarantees as 001's row trigger:
--   * each card's new entries continue its chain: seq = last_seq + 1, + 2, ... and
--     balance_after = the card's balance before + the running sum of the new amounts;
--   * the card was in step with its ledger before (its balance is its last entry's balance_after);
--   * a refund never takes its invoice's refunds above what was redeemed on it before the refund;
--   * then the card's balance and last_seq move to its last new entry (the only way they move).

DROP TRIGGER ledger_entries_chain ON ledger_entries;
DROP FUNCTION ledger_entry_guard();

CREATE FUNCTION ledger_entries_chain_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- The code holds these locks already; taking them here makes the check sound on its own.
    PERFORM 1 FROM cards WHERE card_id IN (SELECT card_id FROM new_entries) ORDER BY card_id FOR UPDATE;

    SELECT c.card_id, c.last_seq, c.current_balance INTO bad FROM cards c
     WHERE c.card_id IN (SELECT card_id FROM new_entries)
       AND NOT ((c.last_seq = 0 AND c.current_balance = 0) OR EXISTS (
            SELECT 1 FROM ledger_entries e
             WHERE e.card_id = c.card_id AND e.seq = c.last_seq AND e.balance_after = c.current_balance))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'card %: balance % (entry %) out of step with its ledger', bad.card_id,
            bad.current_balance, bad.last_seq USING ERRCODE = 'check_violation';
    END IF;

    SELECT n.card_id, n.seq, n.amount, n.balance_after, c.last_seq + n.rn AS expected_seq,
           c.current_balance + n.running - n.amount AS before
      INTO bad
      FROM (SELECT card_id, seq, amount, balance_after,
                   row_number() OVER w AS rn, sum(amount) OVER w AS running
              FROM new_entries WINDOW w AS (PARTITION BY card_id ORDER BY seq)) n
      JOIN cards c USING (card_id)
     WHERE n.seq <> c.last_seq + n.rn OR n.balance_after <> c.current_balance + n.running
     ORDER BY n.card_id, n.seq
     LIMIT 1;
    IF FOUND THEN
        IF bad.seq <> bad.expected_seq THEN
            RAISE EXCEPTION 'card %: entry % does not follow entry %', bad.card_id, bad.seq, bad.expected_seq - 1
                USING ERRCODE = 'check_violation';
        END IF;
        RAISE EXCEPTION 'card %: balance after % must be % + %', bad.card_id, bad.balance_after, bad.before,
            bad.amount USING ERRCODE = 'check_violation';
    END IF;

    SELECT r.card_id, r.original_invoice_number INTO bad
      FROM new_entries r
     WHERE r.entry_type = 'refund'
       AND (SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e
             WHERE e.card_id = r.card_id AND e.entry_type = 'refund'
               AND e.original_invoice_number = r.original_invoice_number AND e.seq <= r.seq)
         > (SELECT coalesce(-sum(e.amount), 0) FROM ledger_entries e
             WHERE e.card_id = r.card_id AND e.entry_type = 'redeem'
               AND e.invoice_number = r.original_invoice_number AND e.seq < r.seq)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'card %: refunds of invoice % would exceed what was redeemed on it', bad.card_id,
            bad.original_invoice_number USING ERRCODE = 'check_violation';
    END IF;

    UPDATE cards c SET current_balance = l.balance_after, last_seq = l.seq
      FROM (SELECT DISTINCT ON (card_id) card_id, seq, balance_after FROM new_entries
             ORDER BY card_id, seq DESC) l
     WHERE c.card_id = l.card_id;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_entries_chain AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_chain_check();
