-- Purchases are recorded before the provider hears of them, and the service credits only
-- what it recorded.
--
-- The purchase call inserts its payments row first (no intent yet), passes the row's id to
-- the provider as the intent's `purchase_id` metadata, and binds the intent id when the
-- provider answers. A webhook that arrives before that answer (3-D Secure, a fast
-- provider, a slow service) finds the row by the purchase id and binds the intent itself,
-- so a genuine credit is never dropped. A webhook for an intent that matches no row, or
-- whose amount, currency, user or tokens disagree with the row, credits nothing and is
-- recorded in webhook_anomalies.

ALTER TABLE payments ALTER COLUMN intent_id DROP NOT NULL;
ALTER TABLE payments ADD COLUMN currency TEXT NOT NULL DEFAULT 'usd';
-- The client's Idempotency-Key of the purchase, and a digest of its request: a retry
-- with the same key reuses the same row (so the same purchase id reaches the provider).
ALTER TABLE payments ADD COLUMN purchase_key TEXT;
ALTER TABLE payments ADD COLUMN purchase_fingerprint TEXT;
ALTER TABLE payments ADD CONSTRAINT payments_purchase_key_unique UNIQUE (account_id, purchase_key);

CREATE TABLE webhook_anomalies (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,       -- one per event: a redelivery adds nothing
    event_type  TEXT NOT NULL,
    intent_id   TEXT,
    payment_id  BIGINT REFERENCES payments (id),
    kind        TEXT NOT NULL CHECK (kind IN ('unknown_intent', 'mismatch')),
    expected    JSONB NOT NULL,             -- what the service recorded ({} when unknown)
    observed    JSONB NOT NULL,             -- what the event said
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
