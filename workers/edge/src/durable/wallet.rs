//! `WALLET`: one per account, the only place money changes.
//!
//! The object keeps its state in its own SQLite database and applies
//! `dex_shared::wallet` to it. After the request body is read, each operation
//! runs its statements with no await in between, so the object's input gate
//! makes it atomic: concurrent requests for one account are applied one after
//! another, which is why a balance cannot be overdrawn by racing requests.

use dex_shared::lease;
use dex_shared::time::{month_key, month_start};
use dex_shared::wallet::{self as w, Actual, Charge, Estimate, Hold, WalletState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result, SqlStorage, State};

use super::reply;

#[durable_object]
pub struct Wallet {
    state: State,
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
struct ReserveRequest {
    request_id: String,
    plan: String,
    estimate: Estimate,
    now_ms: i64,
    ttl_ms: i64,
    #[serde(default)]
    spending_cap_micros: Option<i64>,
    #[serde(default)]
    included_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct SettleRequest {
    request_id: String,
    plan: String,
    actual: Actual,
    now_ms: i64,
    #[serde(default)]
    included_tokens: Option<u64>,
}

/// The plan's terms; a configured allowance (local stacks, tests) replaces
/// the plan's included tokens.
pub fn terms_for(plan: &str, included_tokens: Option<u64>) -> w::PlanTerms {
    match (w::plan_terms(plan), included_tokens) {
        (w::PlanTerms::Metered { overage_input_per_m, overage_output_per_m, default_cap_micros, .. }, Some(n)) => {
            w::PlanTerms::Metered { included_tokens: n, overage_input_per_m, overage_output_per_m, default_cap_micros }
        }
        (terms, _) => terms,
    }
}

/// An isolate's lease renewal (`dex_shared::lease`).
#[derive(Deserialize)]
struct LeaseRequest {
    lease_id: String,
    plan: String,
    spent: lease::Spent,
    want: lease::LeaseAmounts,
    now_ms: i64,
    #[serde(default)]
    included_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct PeriodRequest {
    start_ms: i64,
    end_ms: i64,
    now_ms: i64,
}

#[derive(Deserialize)]
struct ReleaseRequest {
    request_id: String,
}

#[derive(Deserialize)]
struct JsonRow {
    json: String,
}

#[derive(Deserialize)]
struct HoldRow {
    json: String,
    plan: String,
}

#[derive(Deserialize)]
struct AmountRow {
    amount_micros: i64,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS wallet_state (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS holds (request_id TEXT PRIMARY KEY, json TEXT NOT NULL, plan TEXT NOT NULL, expires_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS charges (request_id TEXT PRIMARY KEY, json TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (lease_id TEXT PRIMARY KEY, applied TEXT NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS credits (idempotency_key TEXT PRIMARY KEY, amount_micros INTEGER NOT NULL, reason TEXT NOT NULL, balance_after INTEGER NOT NULL, created_at INTEGER NOT NULL);";

/// Days in the UTC month starting at `start_ms`.
fn month_end(start_ms: i64) -> i64 {
    let key = month_key(start_ms);
    let mut t = start_ms + 28 * dex_shared::time::DAY_MS;
    while month_key(t) == key {
        t += dex_shared::time::DAY_MS;
    }
    t
}

impl DurableObject for Wallet {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        // Failures surface on first use, as errors of that request.
        let _ = sql.exec(SCHEMA, None);
        Self { state, sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        match (req.method(), path.as_str()) {
            (Method::Get, "/balance") => self.summary(crate::logging::now_ms()),
            (Method::Post, "/credit") => match parse::<CreditRequest>(&mut req).await {
                Some(c) => self.credit(c),
                None => bad_request(),
            },
            (Method::Post, "/reserve") => match parse::<ReserveRequest>(&mut req).await {
                Some(r) => {
                    let resp = self.reserve(r);
                    self.arm_alarm().await;
                    resp
                }
                None => bad_request(),
            },
            (Method::Post, "/lease") => match parse::<LeaseRequest>(&mut req).await {
                Some(l) => {
                    let resp = self.renew_lease(l);
                    self.arm_alarm().await;
                    resp
                }
                None => bad_request(),
            },
            (Method::Post, "/settle") => match parse::<SettleRequest>(&mut req).await {
                Some(s) => self.settle(s),
                None => bad_request(),
            },
            (Method::Post, "/period") => match parse::<PeriodRequest>(&mut req).await {
                Some(p) => self.set_period(p),
                None => bad_request(),
            },
            (Method::Post, "/release") => match parse::<ReleaseRequest>(&mut req).await {
                Some(r) => self.release(&r.request_id),
                None => bad_request(),
            },
            _ => reply(404, &json!({"error": "unknown wallet operation"})),
        }
    }

    /// Holds whose Worker never settled them (it died) are settled at their
    /// reserved amount and flagged for reconciliation. An expired lease is
    /// released: what its isolate spent since its last report is unknown.
    async fn alarm(&self) -> Result<Response> {
        let now = crate::logging::now_ms();
        let mut state = self.load_state(now)?;
        let rows: Vec<HoldRow> = self.rows("SELECT json, plan FROM holds WHERE expires_ms <= ?", vec![now.into()])?;
        let expired: Vec<(Hold, String)> =
            rows.into_iter().filter_map(|r| serde_json::from_str(&r.json).ok().map(|h| (h, r.plan))).collect();
        for (hold, plan) in &expired {
            if lease::is_lease(&hold.request_id) {
                self.sql.exec("DELETE FROM holds WHERE request_id = ?", vec![hold.request_id.as_str().into()])?;
                crate::logging::emit(
                    crate::logging::warn("wallet.lease_expired")
                        .field("prepaid_micros", hold.prepaid_micros)
                        .field("allowance_tokens", hold.allowance_tokens),
                );
                continue;
            }
            let charge = w::settle_expired(&mut state, hold, &w::plan_terms(plan));
            self.sql.exec("DELETE FROM holds WHERE request_id = ?", vec![hold.request_id.as_str().into()])?;
            self.store_charge(&charge, now)?;
        }
        self.save_state(&state)?;
        if !expired.is_empty() {
            crate::logging::emit(crate::logging::warn("wallet.holds_expired").field("count", expired.len()));
        }
        self.arm_alarm().await;
        Response::ok("ok")
    }
}

async fn parse<T: DeserializeOwned>(req: &mut Request) -> Option<T> {
    req.json::<T>().await.ok()
}

fn bad_request() -> Result<Response> {
    reply(400, &json!({"error": "bad_request"}))
}

impl Wallet {
    fn rows<T: DeserializeOwned>(&self, query: &str, binds: Vec<worker::SqlStorageValue>) -> Result<Vec<T>> {
        self.sql.exec(query, binds)?.to_array::<T>()
    }

    /// The state, with the billing period rolled forward when it has ended.
    fn load_state(&self, now_ms: i64) -> Result<WalletState> {
        let rows: Vec<JsonRow> = self.rows("SELECT json FROM wallet_state WHERE id = 1", vec![])?;
        let mut state: WalletState = rows.first().and_then(|r| serde_json::from_str(&r.json).ok()).unwrap_or_default();
        if state.period_end_ms <= now_ms {
            let start = month_start(now_ms);
            w::roll_period(&mut state, start, month_end(start));
        }
        Ok(state)
    }

    fn save_state(&self, state: &WalletState) -> Result<()> {
        let text = serde_json::to_string(state)?;
        self.sql.exec(
            "INSERT INTO wallet_state (id, json) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET json = excluded.json",
            vec![text.into()],
        )?;
        Ok(())
    }

    fn holds(&self) -> Result<Vec<Hold>> {
        let rows: Vec<JsonRow> = self.rows("SELECT json FROM holds", vec![])?;
        Ok(rows.iter().filter_map(|r| serde_json::from_str(&r.json).ok()).collect())
    }

    fn charge_of(&self, request_id: &str) -> Result<Option<Charge>> {
        let rows: Vec<JsonRow> = self.rows("SELECT json FROM charges WHERE request_id = ?", vec![request_id.into()])?;
        Ok(rows.first().and_then(|r| serde_json::from_str(&r.json).ok()))
    }

    fn store_charge(&self, charge: &Charge, now_ms: i64) -> Result<()> {
        let text = serde_json::to_string(charge)?;
        self.sql.exec(
            "INSERT OR IGNORE INTO charges (request_id, json, created_ms) VALUES (?, ?, ?)",
            vec![charge.request_id.as_str().into(), text.into(), now_ms.into()],
        )?;
        Ok(())
    }

    async fn arm_alarm(&self) {
        if let Ok(holds) = self.holds() {
            if let Some(at) = w::next_expiry_ms(&holds) {
                let now = crate::logging::now_ms();
                let wait = (at - now).max(1) as u64;
                let _ = self.state.storage().set_alarm(std::time::Duration::from_millis(wait)).await;
            }
        }
    }

    fn summary(&self, now_ms: i64) -> Result<Response> {
        let state = self.load_state(now_ms)?;
        let holds = self.holds()?;
        reply(200, &summary_json(&state, &holds))
    }

    fn credit(&self, c: CreditRequest) -> Result<Response> {
        let previous: Vec<AmountRow> =
            self.rows("SELECT amount_micros FROM credits WHERE idempotency_key = ?", vec![c.idempotency_key.as_str().into()])?;
        let mut state = self.load_state(c.now_ms)?;
        if let Some(prev) = previous.first() {
            if prev.amount_micros != c.amount_micros {
                return reply(409, &json!({"error": "idempotency_conflict"}));
            }
            return reply(200, &json!({"balance_micros": state.balance_micros, "applied": false}));
        }
        let balance = state.balance_micros;
        let after = match w::credit(&mut state, c.amount_micros) {
            Ok(b) => b,
            Err(_) => return reply(400, &json!({"error": "insufficient_balance", "balance_micros": balance})),
        };
        self.save_state(&state)?;
        self.sql.exec(
            "INSERT INTO credits (idempotency_key, amount_micros, reason, balance_after, created_at) VALUES (?, ?, ?, ?, ?)",
            vec![c.idempotency_key.as_str().into(), c.amount_micros.into(), c.reason.as_str().into(), after.into(), c.now_ms.into()],
        )?;
        reply(200, &json!({"balance_micros": after, "applied": true}))
    }

    fn reserve(&self, r: ReserveRequest) -> Result<Response> {
        let mut state = self.load_state(r.now_ms)?;
        if r.spending_cap_micros.is_some() {
            state.spending_cap_micros = r.spending_cap_micros;
        }
        let holds = self.holds()?;
        if let Some(h) = w::find_hold(&holds, &r.request_id) {
            return reply(200, &json!({"hold": h, "replayed": true, "wallet": summary_json(&state, &holds)}));
        }
        if let Some(c) = self.charge_of(&r.request_id)? {
            return reply(409, &json!({"error": "already_settled", "charge": c}));
        }
        let terms = terms_for(&r.plan, r.included_tokens);
        match w::reserve(&state, &holds, &terms, &r.estimate, &r.request_id, r.now_ms, r.ttl_ms) {
            Ok(hold) => {
                let text = serde_json::to_string(&hold)?;
                self.sql.exec(
                    "INSERT INTO holds (request_id, json, plan, expires_ms) VALUES (?, ?, ?, ?)",
                    vec![hold.request_id.as_str().into(), text.into(), r.plan.as_str().into(), hold.expires_ms.into()],
                )?;
                self.save_state(&state)?;
                let mut all = holds;
                all.push(hold.clone());
                reply(200, &json!({"hold": hold, "replayed": false, "wallet": summary_json(&state, &all)}))
            }
            Err(refusal) => reply(402, &json!({"refusal": refusal, "wallet": summary_json(&state, &holds)})),
        }
    }

    fn settle(&self, s: SettleRequest) -> Result<Response> {
        let mut state = self.load_state(s.now_ms)?;
        if let Some(c) = self.charge_of(&s.request_id)? {
            let holds = self.holds()?;
            return reply(
                200,
                &json!({"charge": c, "replayed": true, "low_balance_crossed": false, "wallet": summary_json(&state, &holds)}),
            );
        }
        let mut holds = self.holds()?;
        let Some(hold) = w::take_hold(&mut holds, &s.request_id) else {
            return reply(404, &json!({"error": "no_hold"}));
        };
        let before = state.balance_micros;
        let charge = w::settle(&mut state, &hold, &terms_for(&s.plan, s.included_tokens), &s.actual, &holds);
        self.sql.exec("DELETE FROM holds WHERE request_id = ?", vec![s.request_id.as_str().into()])?;
        self.store_charge(&charge, s.now_ms)?;
        self.save_state(&state)?;
        let crossed = w::low_balance_crossed(before, state.balance_micros, w::LOW_BALANCE_THRESHOLD_MICROS);
        reply(200, &json!({"charge": charge, "replayed": false, "low_balance_crossed": crossed, "wallet": summary_json(&state, &holds)}))
    }

    /// Applies what an isolate spent under its lease (once: reports are
    /// cumulative) and replaces the lease's hold by what it asks for.
    fn renew_lease(&self, l: LeaseRequest) -> Result<Response> {
        if !lease::is_lease(&l.lease_id) {
            return bad_request();
        }
        let mut state = self.load_state(l.now_ms)?;
        let mut holds = self.holds()?;
        let rows: Vec<JsonRow> = self.rows("SELECT applied AS json FROM leases WHERE lease_id = ?", vec![l.lease_id.as_str().into()])?;
        let mut applied: lease::Spent = rows.first().and_then(|r| serde_json::from_str(&r.json).ok()).unwrap_or_default();
        let terms = terms_for(&l.plan, l.included_tokens);
        let grant = lease::renew(&mut state, &mut holds, &terms, &l.lease_id, &mut applied, &l.spent, &l.want, l.now_ms);
        self.sql.exec("DELETE FROM holds WHERE request_id = ?", vec![l.lease_id.as_str().into()])?;
        if let Some(h) = w::find_hold(&holds, &l.lease_id) {
            self.sql.exec(
                "INSERT INTO holds (request_id, json, plan, expires_ms) VALUES (?, ?, ?, ?)",
                vec![h.request_id.as_str().into(), serde_json::to_string(h)?.into(), l.plan.as_str().into(), h.expires_ms.into()],
            )?;
        }
        self.sql.exec(
            "INSERT INTO leases (lease_id, applied, updated_ms) VALUES (?, ?, ?) ON CONFLICT(lease_id) DO UPDATE SET applied = excluded.applied, updated_ms = excluded.updated_ms",
            vec![l.lease_id.as_str().into(), serde_json::to_string(&applied)?.into(), l.now_ms.into()],
        )?;
        // What was applied is kept a day, far beyond any late replay.
        self.sql.exec("DELETE FROM leases WHERE updated_ms < ?", vec![(l.now_ms - 86_400_000).into()])?;
        self.save_state(&state)?;
        reply(200, &json!({"grant": grant, "wallet": summary_json(&state, &holds)}))
    }

    /// A new billing period from the subscription (Stripe): the included
    /// allowance starts again. Replaying the same period changes nothing.
    fn set_period(&self, p: PeriodRequest) -> Result<Response> {
        let mut state = self.load_state(p.now_ms)?;
        let rolled = p.end_ms > p.start_ms && state.period_start_ms != p.start_ms;
        if rolled {
            w::roll_period(&mut state, p.start_ms, p.end_ms);
            self.save_state(&state)?;
        }
        let holds = self.holds()?;
        reply(200, &json!({"rolled": rolled, "wallet": summary_json(&state, &holds)}))
    }

    fn release(&self, request_id: &str) -> Result<Response> {
        self.sql.exec("DELETE FROM holds WHERE request_id = ?", vec![request_id.into()])?;
        reply(200, &json!({"released": true}))
    }
}

#[derive(Serialize)]
struct Summary<'a> {
    balance_micros: i64,
    available_micros: i64,
    held_micros: i64,
    holds: usize,
    period_start_ms: i64,
    period_end_ms: i64,
    allowance_used_tokens: u64,
    overage_micros: i64,
    overage_input_tokens: u64,
    overage_output_tokens: u64,
    spending_cap_micros: &'a Option<i64>,
}

fn summary_json(state: &WalletState, holds: &[Hold]) -> serde_json::Value {
    let s = Summary {
        balance_micros: state.balance_micros,
        available_micros: w::available_micros(state, holds),
        held_micros: holds.iter().map(|h| h.prepaid_micros).sum(),
        holds: holds.len(),
        period_start_ms: state.period_start_ms,
        period_end_ms: state.period_end_ms,
        allowance_used_tokens: state.allowance_used_tokens,
        overage_micros: state.overage_micros,
        overage_input_tokens: state.overage_input_tokens,
        overage_output_tokens: state.overage_output_tokens,
        spending_cap_micros: &state.spending_cap_micros,
    };
    serde_json::to_value(s).unwrap_or_default()
}
