-- Sign-in: device-code login for CLIs, and indexes the auth routes read by.

-- A CLI asks for a code, a signed-in user approves it in the browser, the CLI
-- polls and receives a freshly minted API key once. Only hashes of the device
-- code are stored; the key is minted at the poll that delivers it.
CREATE TABLE device_codes (
  id                TEXT PRIMARY KEY,
  device_code_hash  TEXT NOT NULL UNIQUE,
  user_code         TEXT NOT NULL UNIQUE,
  status            TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied', 'consumed')),
  key_name          TEXT NOT NULL DEFAULT 'dexto-cli',
  approved_user_id  TEXT REFERENCES users(id) ON DELETE CASCADE,
  key_id            TEXT,
  interval_secs     INTEGER NOT NULL,
  created_at        INTEGER NOT NULL,
  expires_at        INTEGER NOT NULL,
  last_polled_at    INTEGER
);
CREATE INDEX device_codes_expires ON device_codes(expires_at);

CREATE INDEX users_created ON users(created_at, id);
CREATE INDEX api_keys_account_name ON api_keys(account_id, name, status);
