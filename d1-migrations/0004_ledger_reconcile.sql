-- A request whose hold the wallet's alarm settled at the reserved amount (the
-- Worker did not settle it in time) is flagged for reconciliation.
ALTER TABLE usage_ledger ADD COLUMN reconcile INTEGER NOT NULL DEFAULT 0 CHECK (reconcile IN (0, 1));
