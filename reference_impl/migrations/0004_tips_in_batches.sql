-- Tips in batches: the service gathers the tips that arrive while earlier ones are in the
-- database and sends them as one statement, one transaction, one commit (group commit in
-- the service, as TigerBeetle batches its transfers). The batch is decided in order, tip
-- by tip, in memory, and written with one statement per table, so what a tip costs the
-- server shrinks as the batch grows: the round trip, the commit, the statements and a
-- hot creator's row lock are paid once per batch.
--
-- The rules are spend_tip's (migration 0003), which this replaces:
--   * keys are claimed first, in (account, key) order, then the accounts are locked with
--     FOR NO KEY UPDATE in id order, as every other spend does (key, then accounts), so
--     two batches, or a batch and any other spend, never deadlock;
--   * the first tip with a key inserts its row; a concurrent request with the same key
--     waits on that insert, then reads the stored answer (`replayed`), or is told
--     `idempotency_conflict` when the stored request had another fingerprint (nothing is
--     stored for a conflict); a key used twice within one batch is a replay of the first
--     use, exactly as if the second had come after the first committed;
--   * each tip is decided on the balances the tips before it in the batch left;
--   * a credit pays the recipient's debt first: the part that repays debt goes to the
--     clawback account (id 2) and is journalled in debt_entries;
--   * the status codes stored with the answer are errors.STATUS_BY_RESULT's (a test
--     checks them).
-- A batch commits or rolls back whole; run again after a lost connection, each tip of it
-- that did commit is a replay by its key.
--
-- Returns one row per tip, in array order: (result, body, replayed); for a conflict the
-- body holds the operation the key was used for, from which the service words its message.

DROP FUNCTION spend_tip(BIGINT, BIGINT, BIGINT, TEXT, TEXT);

CREATE FUNCTION spend_tips(p_sender_ids BIGINT[], p_recipient_ids BIGINT[],
                           p_amounts_tokens BIGINT[], p_keys TEXT[], p_fingerprints TEXT[])
RETURNS TABLE (o_result TEXT, o_body JSONB, o_replayed BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    tips_count INT := cardinality(p_sender_ids);
    tip_keys TEXT[];          -- per tip: its (sender, key) as 'sender:key'
    claimed_keys TEXT[];      -- the 'sender:key' this batch inserted
    account_ids BIGINT[];     -- the locked user accounts, in id order
    balances BIGINT[];        -- their balances and debts, as the tips so far left them
    debts BIGINT[];
    results TEXT[] := '{}';
    bodies JSONB[] := '{}';
    replays BOOLEAN[] := '{}';
    new_transaction_ids BIGINT[] := '{}';
    new_references TEXT[] := '{}';
    entry_transaction_ids BIGINT[] := '{}';
    entry_account_ids BIGINT[] := '{}';
    entry_amounts BIGINT[] := '{}';
    debt_transaction_ids BIGINT[] := '{}';
    debt_account_ids BIGINT[] := '{}';
    debt_amounts BIGINT[] := '{}';
    answered_indexes INT[] := '{}';  -- tips whose answer is stored under their key
    transaction_sequence TEXT := pg_get_serial_sequence('ledger_transactions', 'id');
    first_use INT;
    sender_index INT;
    recipient_index INT;
    paid_debt BIGINT;
    transaction_id BIGINT;
    stored RECORD;
BEGIN
    IF tips_count IS NULL OR tips_count = 0
       OR cardinality(p_recipient_ids) IS DISTINCT FROM tips_count
       OR cardinality(p_amounts_tokens) IS DISTINCT FROM tips_count
       OR cardinality(p_keys) IS DISTINCT FROM tips_count
       OR cardinality(p_fingerprints) IS DISTINCT FROM tips_count THEN
        RAISE EXCEPTION 'a batch holds at least one tip and as many of each field';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_amounts_tokens) AS a (amount) WHERE a.amount <= 0) THEN
        RAISE EXCEPTION 'a tip moves a positive amount';
    END IF;
    tip_keys := ARRAY(SELECT t.sender || ':' || t.key
                      FROM unnest(p_sender_ids, p_keys) WITH ORDINALITY AS t (sender, key, ord)
                      ORDER BY t.ord);

    WITH wanted AS (
        SELECT DISTINCT ON (t.sender, t.key) t.sender, t.key, t.fingerprint
        FROM unnest(p_sender_ids, p_keys, p_fingerprints) WITH ORDINALITY
             AS t (sender, key, fingerprint, ord)
        ORDER BY t.sender, t.key, t.ord
    ), inserted AS (
        INSERT INTO idempotency_keys (account_id, key, operation, fingerprint)
        SELECT w.sender, w.key, 'tip', w.fingerprint FROM wanted w ORDER BY w.sender, w.key
        ON CONFLICT (account_id, key) DO NOTHING
        RETURNING account_id, key
    )
    SELECT coalesce(array_agg(i.account_id || ':' || i.key), '{}') INTO claimed_keys
    FROM inserted i;

    SELECT coalesce(array_agg(a.id ORDER BY a.id), '{}'),
           coalesce(array_agg(a.balance ORDER BY a.id), '{}'),
           coalesce(array_agg(a.debt ORDER BY a.id), '{}')
    INTO account_ids, balances, debts
    FROM (SELECT l.id, l.balance, l.debt FROM accounts l
          WHERE l.id = ANY (p_sender_ids || p_recipient_ids) AND l.kind <> 'system'
          ORDER BY l.id FOR NO KEY UPDATE) AS a;

    FOR i IN 1 .. tips_count LOOP
        first_use := array_position(tip_keys, tip_keys[i]);
        IF first_use < i AND tip_keys[i] = ANY (claimed_keys) THEN
            -- the key's first use in this batch claimed it: that use answers this one
            IF p_fingerprints[first_use] <> p_fingerprints[i] THEN
                results[i] := 'idempotency_conflict';
                bodies[i] := jsonb_build_object('operation', 'tip');
                replays[i] := false;
            ELSE
                results[i] := results[first_use];
                bodies[i] := bodies[first_use];
                replays[i] := true;
            END IF;
            CONTINUE;
        END IF;
        IF NOT tip_keys[i] = ANY (claimed_keys) THEN  -- stored before this batch
            SELECT k.operation, k.fingerprint, k.result, k.body INTO stored
            FROM idempotency_keys k WHERE k.account_id = p_sender_ids[i] AND k.key = p_keys[i];
            IF stored.fingerprint <> p_fingerprints[i] THEN
                results[i] := 'idempotency_conflict';
                bodies[i] := jsonb_build_object('operation', stored.operation);
                replays[i] := false;
            ELSIF stored.result IS NULL THEN
                RAISE EXCEPTION 'key % of account % holds no answer', p_keys[i], p_sender_ids[i];
            ELSE
                results[i] := stored.result;
                bodies[i] := stored.body;
                replays[i] := true;
            END IF;
            CONTINUE;
        END IF;

        sender_index := array_position(account_ids, p_sender_ids[i]);
        recipient_index := array_position(account_ids, p_recipient_ids[i]);
        IF sender_index IS NULL THEN
            RAISE EXCEPTION 'the authenticated sender % has no account', p_sender_ids[i];
        END IF;
        replays[i] := false;
        answered_indexes := answered_indexes || i;
        IF recipient_index IS NULL THEN
            results[i] := 'not_found';
            bodies[i] := jsonb_build_object(
                'message', format('no user %s to tip', p_recipient_ids[i]));
        ELSIF balances[sender_index] < p_amounts_tokens[i] THEN
            results[i] := 'insufficient_funds';
            bodies[i] := jsonb_build_object(
                'message', format('the balance of %s tokens does not cover %s',
                                  balances[sender_index], p_amounts_tokens[i]),
                'balance', balances[sender_index]);
        ELSE
            paid_debt := least(p_amounts_tokens[i], debts[recipient_index]);
            balances[sender_index] := balances[sender_index] - p_amounts_tokens[i];
            balances[recipient_index] := balances[recipient_index]
                                         + (p_amounts_tokens[i] - paid_debt);
            debts[recipient_index] := debts[recipient_index] - paid_debt;
            transaction_id := nextval(transaction_sequence);
            new_transaction_ids := new_transaction_ids || transaction_id;
            new_references := new_references || ('tip:' || tip_keys[i]);
            entry_transaction_ids := entry_transaction_ids || transaction_id;
            entry_account_ids := entry_account_ids || p_sender_ids[i];
            entry_amounts := entry_amounts || -p_amounts_tokens[i];
            IF p_amounts_tokens[i] > paid_debt THEN
                entry_transaction_ids := entry_transaction_ids || transaction_id;
                entry_account_ids := entry_account_ids || p_recipient_ids[i];
                entry_amounts := entry_amounts || (p_amounts_tokens[i] - paid_debt);
            END IF;
            IF paid_debt > 0 THEN
                entry_transaction_ids := entry_transaction_ids || transaction_id;
                entry_account_ids := entry_account_ids || 2::BIGINT;
                entry_amounts := entry_amounts || paid_debt;
                debt_transaction_ids := debt_transaction_ids || transaction_id;
                debt_account_ids := debt_account_ids || p_recipient_ids[i];
                debt_amounts := debt_amounts || -paid_debt;
            END IF;
            results[i] := 'created';
            bodies[i] := jsonb_build_object('tip_id', transaction_id,
                                            'balance', balances[sender_index]);
        END IF;
    END LOOP;

    IF cardinality(new_transaction_ids) > 0 THEN
        INSERT INTO ledger_transactions (id, kind, reference) OVERRIDING SYSTEM VALUE
        SELECT t.id, 'tip', t.reference FROM unnest(new_transaction_ids, new_references)
                                             AS t (id, reference);
        INSERT INTO ledger_entries (transaction_id, account_id, amount)
        SELECT * FROM unnest(entry_transaction_ids, entry_account_ids, entry_amounts);
        INSERT INTO debt_entries (transaction_id, account_id, amount)
        SELECT * FROM unnest(debt_transaction_ids, debt_account_ids, debt_amounts);
        UPDATE accounts a SET balance = v.balance, debt = v.debt
        FROM unnest(account_ids, balances, debts) AS v (id, balance, debt)
        WHERE a.id = v.id AND (a.balance <> v.balance OR a.debt <> v.debt);
    END IF;
    IF cardinality(answered_indexes) > 0 THEN
        UPDATE idempotency_keys k
        SET result = results[t.i],
            status_code = CASE results[t.i] WHEN 'created' THEN 201
                                            WHEN 'insufficient_funds' THEN 402
                                            WHEN 'not_found' THEN 404 END,
            body = bodies[t.i]
        FROM unnest(answered_indexes) AS t (i)
        WHERE k.account_id = p_sender_ids[t.i] AND k.key = p_keys[t.i] AND k.result IS NULL;
    END IF;

    RETURN QUERY SELECT r.result, r.body, r.replayed
                 FROM unnest(results, bodies, replays) WITH ORDINALITY AS r (result, body, replayed, ord)
                 ORDER BY r.ord;
END;
$$;
