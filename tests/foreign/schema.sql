-- The foreign token service's schema: wallets keyed by a text owner id, a journal of
-- wallet entries, the Stripe intents it created, per-owner client keys, tips, and video
-- sessions billed per minute. Money is BIGINT tokens or cents, never fractions.
--
-- For every wallet: balance == sum(wallet_entries.balance_delta) and
-- owed == sum(wallet_entries.owed_delta), and state is 'owing' exactly when owed > 0. A
-- credit repays what is owed first; a clawback takes the balance first and records the
-- rest as owed. The wallet 'platform' receives the fee of every tip ('tip_fee').

CREATE TABLE IF NOT EXISTS wallets (
    owner_id       TEXT PRIMARY KEY,
    is_creator     BOOLEAN NOT NULL,
    api_key_sha256 TEXT NOT NULL UNIQUE,
    balance        BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    owed           BIGINT NOT NULL DEFAULT 0 CHECK (owed >= 0),
    state          TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'owing')),
    opened_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS wallet_entries (
    entry_no      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id      TEXT NOT NULL REFERENCES wallets (owner_id),
    reason        TEXT NOT NULL
                  CHECK (reason IN ('purchase', 'refund', 'dispute', 'reinstate',
                                    'tip_out', 'tip_in', 'tip_fee', 'minute_out',
                                    'minute_in')),
    balance_delta BIGINT NOT NULL,
    owed_delta    BIGINT NOT NULL DEFAULT 0,
    ref           TEXT NOT NULL,
    booked_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS wallet_entries_owner ON wallet_entries (owner_id);

-- The platform's wallet, which the tip fees go to: no creator, and the hash of a random
-- key that was never kept, so no request can act as it. Every start runs this file, so
-- it is created once.
INSERT INTO wallets (owner_id, is_creator, api_key_sha256)
VALUES ('platform', FALSE, encode(sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'hex'))
ON CONFLICT (owner_id) DO NOTHING;

-- One row per purchase, written before the provider hears of it. The intent id is bound
-- once the provider answers (or a webhook that beat the answer binds it by order_no).
-- The UNIQUE constraint is not deferrable, so it is an ON CONFLICT arbiter.
CREATE TABLE IF NOT EXISTS stripe_intents (
    order_no       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    intent_id      TEXT CONSTRAINT stripe_intents_intent_id_key UNIQUE,
    owner_id       TEXT NOT NULL REFERENCES wallets (owner_id),
    price_cents    BIGINT NOT NULL CHECK (price_cents > 0),
    base_tokens    BIGINT NOT NULL CHECK (base_tokens > 0),
    bonus_tokens   BIGINT NOT NULL DEFAULT 0 CHECK (bonus_tokens >= 0),
    refunded_cents BIGINT NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    dispute_state  TEXT CHECK (dispute_state IN ('open', 'won', 'lost')),
    taken_tokens   BIGINT NOT NULL DEFAULT 0 CHECK (taken_tokens >= 0),
    client_key     TEXT,
    request_sha256 TEXT NOT NULL,
    placed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT stripe_intents_owner_key UNIQUE (owner_id, client_key)
);

-- The one credit of an intent: a row here is the credit; ON CONFLICT makes it once.
CREATE TABLE IF NOT EXISTS intent_credits (
    intent_id   TEXT NOT NULL CONSTRAINT intent_credits_intent_id_key UNIQUE,
    order_no    BIGINT NOT NULL REFERENCES stripe_intents (order_no),
    tokens      BIGINT NOT NULL CHECK (tokens > 0),
    credited_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Answers stored under a client key, per owner and operation.
CREATE TABLE IF NOT EXISTS client_keys (
    owner_id    TEXT NOT NULL REFERENCES wallets (owner_id),
    operation   TEXT NOT NULL,
    client_key  TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    status      INTEGER NOT NULL,
    answer      JSONB NOT NULL,
    PRIMARY KEY (owner_id, operation, client_key)
);

CREATE TABLE IF NOT EXISTS tips (
    tip_no     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_owner TEXT NOT NULL REFERENCES wallets (owner_id),
    to_owner   TEXT NOT NULL REFERENCES wallets (owner_id),
    tokens     BIGINT NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS video_sessions (
    session_id    TEXT PRIMARY KEY,
    fan_owner     TEXT NOT NULL REFERENCES wallets (owner_id),
    creator_owner TEXT NOT NULL REFERENCES wallets (owner_id),
    per_minute    BIGINT NOT NULL CHECK (per_minute > 0),
    closed        TEXT CHECK (closed IN ('by_fan', 'out_of_funds')),
    opened_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS session_minutes (
    session_id TEXT NOT NULL REFERENCES video_sessions (session_id),
    minute_no  INTEGER NOT NULL,
    tokens     BIGINT NOT NULL CHECK (tokens > 0),
    charge_id  TEXT NOT NULL,
    billed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, minute_no)
);

-- Verified webhook events, answered 202 when stored and applied later, in arrival order,
-- by the service's inbox worker: one transaction applies an event and marks it applied.
CREATE TABLE IF NOT EXISTS webhook_inbox (
    inbox_no    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    facts       JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    applied_at  TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS webhook_inbox_pending ON webhook_inbox (inbox_no)
    WHERE applied_at IS NULL;
