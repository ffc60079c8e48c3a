-- The AI proxy: per-account upstream keys (minted with a spending limit,
-- stored AES-256-GCM sealed, never returned) and usage ledger indexes.

CREATE TABLE upstream_keys (
  account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  provider      TEXT NOT NULL,
  -- The provider's id for the key (OpenRouter's hash), to update or delete it.
  key_ref       TEXT NOT NULL,
  sealed_key    TEXT NOT NULL,
  limit_micros  INTEGER,
  created_at    INTEGER NOT NULL,
  PRIMARY KEY (account_id, provider)
);

CREATE INDEX usage_ledger_key_time ON usage_ledger(api_key_id, created_at);
