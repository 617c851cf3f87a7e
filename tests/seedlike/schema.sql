-- The seed-shaped service's schema: the seed's three tables (with the columns its
-- hardening patch names) and the bearer tokens of its users.
--
-- For every user: token_balances.balance == the sum of tokens of its completed
-- token_transactions. A clawback the balance cannot cover goes to users.debt_amount.

CREATE TABLE IF NOT EXISTS users (
    supabase_id    UUID PRIMARY KEY,
    is_creator     BOOLEAN NOT NULL DEFAULT false,
    account_status TEXT NOT NULL DEFAULT 'active' CHECK (account_status IN ('active', 'debt')),
    debt_amount    BIGINT NOT NULL DEFAULT 0 CHECK (debt_amount >= 0)
);

CREATE TABLE IF NOT EXISTS auth_tokens (
    token   TEXT PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (supabase_id)
);

CREATE TABLE IF NOT EXISTS token_balances (
    user_id         UUID PRIMARY KEY REFERENCES users (supabase_id),
    balance         BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    total_purchased BIGINT NOT NULL DEFAULT 0,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A purchase row per intent (the UNIQUE constraint is not deferrable, so it is the
-- ON CONFLICT arbiter of the once-per-intent credit); spends and clawbacks carry no intent.
CREATE TABLE IF NOT EXISTS token_transactions (
    id                       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                  UUID NOT NULL REFERENCES users (supabase_id),
    type                     TEXT NOT NULL CHECK (type IN ('purchase', 'tip_sent',
                             'tip_received', 'call_sent', 'call_received', 'refund')),
    tokens                   BIGINT NOT NULL,
    stripe_payment_intent_id TEXT CONSTRAINT token_transactions_intent_key UNIQUE,
    client_idempotency_key   TEXT,
    related_user_id          UUID,
    related_intent_id        TEXT,
    amount_cents             BIGINT,
    refunded_cents           BIGINT NOT NULL DEFAULT 0,
    clawed_back_tokens       BIGINT NOT NULL DEFAULT 0,
    status                   TEXT NOT NULL CHECK (status IN ('pending', 'completed')),
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT token_transactions_client_key UNIQUE (user_id, client_idempotency_key)
);
CREATE INDEX IF NOT EXISTS token_transactions_user ON token_transactions (user_id);
