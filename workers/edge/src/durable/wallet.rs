//! `WALLET`: one per account, the only place money changes.
//!
//! SQLite storage inside the object; each request runs its statements with no
//! await between them, so the object's input gate makes them atomic and
//! concurrent requests for one account are applied one after another.

use serde::Deserialize;
use serde_json::json;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result, SqlStorage, State};

use super::reply;

#[durable_object]
pub struct Wallet {
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct CreditRequest {
    amount_micros: i64,
    reason: String,
    idempotency_key: String,
    now_ms: i64,
}

#[derive(Deserialize)]
struct BalanceRow {
    balance_micros: i64,
}

#[derive(Deserialize)]
struct CreditRow {
    amount_micros: i64,
}

impl DurableObject for Wallet {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // Schema of the object's own database; failures surface on first use.
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS wallet (id INTEGER PRIMARY KEY CHECK (id = 1), balance_micros INTEGER NOT NULL);
             INSERT OR IGNORE INTO wallet (id, balance_micros) VALUES (1, 0);
             CREATE TABLE IF NOT EXISTS credits (idempotency_key TEXT PRIMARY KEY, amount_micros INTEGER NOT NULL, reason TEXT NOT NULL, balance_after INTEGER NOT NULL, created_at INTEGER NOT NULL);",
            None,
        );
        Self { sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        match (req.method(), path.as_str()) {
            (Method::Get, "/balance") => reply(200, &json!({"balance_micros": self.balance()?})),
            (Method::Post, "/credit") => {
                let Ok(body) = req.json::<CreditRequest>().await else {
                    return reply(400, &json!({"error": "bad_request"}));
                };
                self.credit(body)
            }
            _ => reply(404, &json!({"error": "unknown wallet operation"})),
        }
    }
}

impl Wallet {
    fn balance(&self) -> Result<i64> {
        let rows: Vec<BalanceRow> = self.sql.exec("SELECT balance_micros FROM wallet WHERE id = 1", None)?.to_array()?;
        Ok(rows.first().map(|r| r.balance_micros).unwrap_or(0))
    }

    /// Adds (or, when negative, removes) credit once per idempotency key. A
    /// replay answers as the first call did; the same key with another amount
    /// is a conflict, never a second credit.
    fn credit(&self, c: CreditRequest) -> Result<Response> {
        let previous: Vec<CreditRow> = self
            .sql
            .exec("SELECT amount_micros FROM credits WHERE idempotency_key = ?", vec![c.idempotency_key.as_str().into()])?
            .to_array()?;
        if let Some(prev) = previous.first() {
            if prev.amount_micros != c.amount_micros {
                return reply(409, &json!({"error": "idempotency_conflict"}));
            }
            return reply(200, &json!({"balance_micros": self.balance()?, "applied": false}));
        }
        let balance = self.balance()?;
        let Some(after) = balance.checked_add(c.amount_micros) else {
            return reply(400, &json!({"error": "overflow"}));
        };
        if after < 0 {
            return reply(400, &json!({"error": "insufficient_balance", "balance_micros": balance}));
        }
        self.sql.exec("UPDATE wallet SET balance_micros = ? WHERE id = 1", vec![after.into()])?;
        self.sql.exec(
            "INSERT INTO credits (idempotency_key, amount_micros, reason, balance_after, created_at) VALUES (?, ?, ?, ?, ?)",
            vec![c.idempotency_key.as_str().into(), c.amount_micros.into(), c.reason.as_str().into(), after.into(), c.now_ms.into()],
        )?;
        reply(200, &json!({"balance_micros": after, "applied": true}))
    }
}
