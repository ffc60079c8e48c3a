-- Dex Edge, first schema. Times are integer milliseconds since the Unix epoch
-- (UTC); money is integer micro-USD. Ids are prefixed random strings.

-- The billing entity: a Dex user's subscription, a Dexto prepaid wallet, a Karen tenant.
CREATE TABLE accounts (
  id                  TEXT PRIMARY KEY,
  name                TEXT NOT NULL,
  kind                TEXT NOT NULL DEFAULT 'personal' CHECK (kind IN ('personal', 'tenant', 'organization')),
  plan                TEXT NOT NULL DEFAULT 'prepaid' CHECK (plan IN ('prepaid', 'basic', 'pro', 'ignition', 'velocity', 'dominance')),
  status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
  status_reason       TEXT,
  stripe_customer_id  TEXT UNIQUE,
  -- Most that plan overage may add in one period; NULL means the plan default.
  spending_cap_micros INTEGER,
  created_at          INTEGER NOT NULL,
  updated_at          INTEGER NOT NULL
);

CREATE TABLE users (
  id             TEXT PRIMARY KEY,
  account_id     TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  email          TEXT UNIQUE COLLATE NOCASE,
  password_hash  TEXT,
  phone          TEXT UNIQUE,
  name           TEXT,
  -- Role within the account.
  role           TEXT NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'admin', 'member')),
  -- Global operator role: opens /v1/admin/*.
  is_operator    INTEGER NOT NULL DEFAULT 0 CHECK (is_operator IN (0, 1)),
  -- Karen tenant the user belongs to, when there is one.
  tenant_id      TEXT,
  status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  created_at     INTEGER NOT NULL,
  updated_at     INTEGER NOT NULL,
  CHECK (email IS NOT NULL OR phone IS NOT NULL),
  CHECK (email IS NULL OR password_hash IS NOT NULL)
);
CREATE INDEX users_account ON users(account_id);

-- Refresh-token sessions. Rotation keeps the family; reuse of a used token
-- revokes the whole family.
CREATE TABLE sessions (
  id                  TEXT PRIMARY KEY,
  user_id             TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  family_id           TEXT NOT NULL,
  refresh_token_hash  TEXT NOT NULL UNIQUE,
  created_at          INTEGER NOT NULL,
  expires_at          INTEGER NOT NULL,
  used_at             INTEGER,
  revoked_at          INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_family ON sessions(family_id);
CREATE INDEX sessions_expires ON sessions(expires_at);

-- API keys: only a keyed SHA-256 of the key is stored, with display parts.
CREATE TABLE api_keys (
  id            TEXT PRIMARY KEY,
  account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  key_hash      TEXT NOT NULL UNIQUE,
  prefix        TEXT NOT NULL,
  last4         TEXT NOT NULL,
  name          TEXT NOT NULL DEFAULT 'default',
  status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
  scopes        TEXT NOT NULL DEFAULT '["*"]',
  created_at    INTEGER NOT NULL,
  last_used_at  INTEGER,
  revoked_at    INTEGER,
  expires_at    INTEGER
);
CREATE INDEX api_keys_account ON api_keys(account_id);
CREATE INDEX api_keys_user ON api_keys(user_id);

-- One row per metered request, written off the response path.
CREATE TABLE usage_ledger (
  request_id     TEXT PRIMARY KEY,
  account_id     TEXT NOT NULL,
  api_key_id     TEXT,
  kind           TEXT NOT NULL DEFAULT 'ai_request',
  model          TEXT,
  provider       TEXT,
  input_tokens   INTEGER NOT NULL DEFAULT 0,
  output_tokens  INTEGER NOT NULL DEFAULT 0,
  cached_tokens  INTEGER NOT NULL DEFAULT 0,
  cost_micros    INTEGER NOT NULL DEFAULT 0,
  latency_ms     INTEGER,
  status         INTEGER,
  estimated      INTEGER NOT NULL DEFAULT 0 CHECK (estimated IN (0, 1)),
  created_at     INTEGER NOT NULL
);
CREATE INDEX usage_ledger_account_time ON usage_ledger(account_id, created_at);

-- Monthly aggregates per account (billing, /me/usage, Stripe overage sync).
CREATE TABLE usage_monthly (
  account_id        TEXT NOT NULL,
  month             TEXT NOT NULL, -- YYYY-MM, UTC
  requests          INTEGER NOT NULL DEFAULT 0,
  input_tokens      INTEGER NOT NULL DEFAULT 0,
  output_tokens     INTEGER NOT NULL DEFAULT 0,
  cached_tokens     INTEGER NOT NULL DEFAULT 0,
  cost_micros       INTEGER NOT NULL DEFAULT 0,
  overage_input_tokens   INTEGER NOT NULL DEFAULT 0,
  overage_output_tokens  INTEGER NOT NULL DEFAULT 0,
  synced_input_tokens    INTEGER NOT NULL DEFAULT 0,
  synced_output_tokens   INTEGER NOT NULL DEFAULT 0,
  synced_at         INTEGER,
  updated_at        INTEGER NOT NULL,
  PRIMARY KEY (account_id, month)
);

-- One row per job, updated on each attempt; the dead-letter consumer marks
-- jobs that used up their retries as failed.
CREATE TABLE job_history (
  job_id           TEXT PRIMARY KEY,
  job_type         TEXT NOT NULL,
  triggered_by     TEXT NOT NULL,
  payload          TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'retrying', 'completed', 'failed')),
  attempts         INTEGER NOT NULL DEFAULT 0,
  last_error       TEXT,
  result           TEXT,
  created_at       INTEGER NOT NULL,
  started_at       INTEGER,
  completed_at     INTEGER,
  dead_lettered_at INTEGER
);
CREATE INDEX job_history_type_time ON job_history(job_type, created_at);
CREATE INDEX job_history_status ON job_history(status, completed_at);

-- Webhook event ids seen, so each event takes effect once.
CREATE TABLE webhook_events (
  provider      TEXT NOT NULL,
  event_id      TEXT NOT NULL,
  event_type    TEXT NOT NULL,
  received_at   INTEGER NOT NULL,
  processed_at  INTEGER,
  PRIMARY KEY (provider, event_id)
);
CREATE INDEX webhook_events_processed ON webhook_events(processed_at);
