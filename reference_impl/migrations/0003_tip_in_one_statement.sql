-- A tip in one statement: claim the idempotency key, lock both accounts in id order,
-- decide, post the balanced movement, and store the answer under the key, all inside
-- the server. Called outside an explicit transaction, the statement is its own
-- transaction, so a tip costs one round trip and its row locks are held for the time the
-- server needs, never for a round trip to the service (the hot creator's row is the one
-- every tip to that creator waits for).
--
-- The rules are those of reference_impl/service.py, idempotency.py and ledger.py:
--   * the first request with a key inserts its row; a concurrent one with the same key
--     waits on that insert and then reads the stored answer (`replayed`), or is told
--     `idempotency_conflict` when the stored request had another fingerprint (nothing is
--     stored for a conflict);
--   * the accounts are locked with FOR NO KEY UPDATE in id order, so tips in a cycle
--     never deadlock;
--   * a credit pays the recipient's debt first: the part that repays debt goes to the
--     clawback account (id 2) and is journalled in debt_entries;
--   * the status codes stored with the answer are errors.STATUS_BY_RESULT's (a test
--     checks them).
--
-- Returns one row: (result, body, replayed); for a conflict the body holds the
-- operation the key was used for, from which the service words its message.

CREATE FUNCTION spend_tip(p_sender_id BIGINT, p_recipient_id BIGINT, p_amount_tokens BIGINT,
                          p_key TEXT, p_fingerprint TEXT,
                          OUT o_result TEXT, OUT o_body JSONB, OUT o_replayed BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    stored_operation TEXT;
    stored_fingerprint TEXT;
    locked RECORD;
    sender_found BOOLEAN := false;
    sender_balance BIGINT;
    recipient_found BOOLEAN := false;
    recipient_debt BIGINT;
    paid_debt BIGINT;
    v_transaction_id BIGINT;
BEGIN
    IF p_amount_tokens <= 0 THEN
        RAISE EXCEPTION 'a tip moves a positive amount, not %', p_amount_tokens;
    END IF;
    INSERT INTO idempotency_keys (account_id, key, operation, fingerprint)
    VALUES (p_sender_id, p_key, 'tip', p_fingerprint)
    ON CONFLICT (account_id, key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT k.operation, k.fingerprint, k.result, k.body
        INTO stored_operation, stored_fingerprint, o_result, o_body
        FROM idempotency_keys k WHERE k.account_id = p_sender_id AND k.key = p_key;
        IF stored_fingerprint <> p_fingerprint THEN
            o_result := 'idempotency_conflict';
            o_body := jsonb_build_object('operation', stored_operation);
            o_replayed := false;
            RETURN;
        END IF;
        IF o_result IS NULL THEN
            RAISE EXCEPTION 'key % of account % holds no answer', p_key, p_sender_id;
        END IF;
        o_replayed := true;
        RETURN;
    END IF;

    FOR locked IN
        SELECT a.id, a.balance, a.debt FROM accounts a
        WHERE a.id IN (p_sender_id, p_recipient_id) AND a.kind <> 'system'
        ORDER BY a.id FOR NO KEY UPDATE
    LOOP
        IF locked.id = p_sender_id THEN
            sender_found := true;
            sender_balance := locked.balance;
        ELSE
            recipient_found := true;
            recipient_debt := locked.debt;
        END IF;
    END LOOP;
    IF NOT sender_found THEN
        RAISE EXCEPTION 'the authenticated sender % has no account', p_sender_id;
    END IF;

    o_replayed := false;
    IF NOT recipient_found THEN
        o_result := 'not_found';
        o_body := jsonb_build_object('message', format('no user %s to tip', p_recipient_id));
    ELSIF sender_balance < p_amount_tokens THEN
        o_result := 'insufficient_funds';
        o_body := jsonb_build_object(
            'message', format('the balance of %s tokens does not cover %s',
                              sender_balance, p_amount_tokens),
            'balance', sender_balance);
    ELSE
        paid_debt := least(p_amount_tokens, recipient_debt);
        INSERT INTO ledger_transactions (kind, reference)
        VALUES ('tip', 'tip:' || p_sender_id || ':' || p_key)
        RETURNING id INTO v_transaction_id;
        INSERT INTO ledger_entries (transaction_id, account_id, amount)
        SELECT v_transaction_id, e.account_id, e.amount
        FROM (VALUES (p_sender_id, -p_amount_tokens),
                     (p_recipient_id, p_amount_tokens - paid_debt),
                     (2::BIGINT, paid_debt)) AS e (account_id, amount)
        WHERE e.amount <> 0;
        IF paid_debt > 0 THEN
            INSERT INTO debt_entries (transaction_id, account_id, amount)
            VALUES (v_transaction_id, p_recipient_id, -paid_debt);
        END IF;
        UPDATE accounts SET balance = balance - p_amount_tokens
        WHERE id = p_sender_id RETURNING balance INTO sender_balance;
        UPDATE accounts SET balance = balance + (p_amount_tokens - paid_debt),
                            debt = debt - paid_debt
        WHERE id = p_recipient_id;
        o_result := 'created';
        o_body := jsonb_build_object('tip_id', v_transaction_id, 'balance', sender_balance);
    END IF;

    UPDATE idempotency_keys k
    SET result = o_result,
        status_code = CASE o_result WHEN 'created' THEN 201 WHEN 'insufficient_funds' THEN 402
                                    WHEN 'not_found' THEN 404 END,
        body = o_body
    WHERE k.account_id = p_sender_id AND k.key = p_key AND k.result IS NULL;
END;
$$;
