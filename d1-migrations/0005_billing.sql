-- Stripe: checkout transactions, subscriptions, and what usage was reported.

CREATE TABLE stripe_transactions (
  id             TEXT PRIMARY KEY,             -- the Checkout Session id
  account_id     TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  kind           TEXT NOT NULL CHECK (kind IN ('credit_pack', 'subscription')),
  amount_micros  INTEGER NOT NULL DEFAULT 0,
  plan           TEXT,
  status         TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'failed', 'expired')),
  created_at     INTEGER NOT NULL,
  updated_at     INTEGER NOT NULL
);
CREATE INDEX stripe_transactions_account ON stripe_transactions(account_id, created_at);

CREATE TABLE subscriptions (
  account_id              TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
  stripe_subscription_id  TEXT NOT NULL UNIQUE,
  plan                    TEXT NOT NULL,
  status                  TEXT NOT NULL,
  current_period_start    INTEGER,
  current_period_end      INTEGER,
  -- The Stripe event this row reflects: older or lesser events never overwrite it.
  last_event_created      INTEGER NOT NULL,
  status_rank             INTEGER NOT NULL,
  updated_at              INTEGER NOT NULL
);

-- Overage already sent to Stripe Billing Meters, per account, period and kind.
CREATE TABLE usage_sync (
  account_id      TEXT NOT NULL,
  period_start    INTEGER NOT NULL,
  kind            TEXT NOT NULL CHECK (kind IN ('input', 'output')),
  reported_tokens INTEGER NOT NULL DEFAULT 0,
  updated_at      INTEGER NOT NULL,
  PRIMARY KEY (account_id, period_start, kind)
);

-- The verified event body, read by the job that applies it (queue messages
-- carry only the id).
ALTER TABLE webhook_events ADD COLUMN payload TEXT;
