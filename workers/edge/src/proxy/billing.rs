//! Money around a proxied request: reserve an estimate in the account's
//! `WALLET` before forwarding, settle to the real usage after, release it
//! all when nothing was served. The Durable Object applies these one at a
//! time per account, so concurrent requests cannot overdraw a balance.

use dex_shared::error::ApiError;
use dex_shared::models::{cost_micros, Model};
use dex_shared::translate::usage::Usage;
use dex_shared::wallet::{estimate_input_tokens, Actual, Estimate};
use serde_json::{json, Value};
use worker::{Env, Method};

use crate::durable;
use crate::logging;

/// A hold outlives any request it covers; the alarm settles it only if the
/// Worker died before settling. `WALLET_HOLD_TTL_MS` overrides it.
pub const HOLD_TTL_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct Reservation {
    pub request_id: String,
    pub account_id: String,
    pub plan: String,
    /// `PLAN_INCLUDED_TOKENS` when configured (local stacks and tests).
    pub included_tokens: Option<u64>,
    /// What the account could still spend once this hold was placed.
    pub available_after_micros: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// What this request cost the account (prepaid + plan overage).
    pub charged_micros: i64,
    pub balance_micros: i64,
    pub low_balance_crossed: bool,
    /// The wallet's alarm had already settled the hold at its reserved amount.
    pub expired: bool,
}

fn dollars(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// The 402 the Dexto CLI parses: `error.code`, and the balance both as
/// `balance_usd` and in the message ("Balance: $0.12.").
pub fn insufficient(balance_micros: i64) -> ApiError {
    let shown = balance_micros.max(0) / 10_000; // cents, rounded down
    ApiError::new(
        402,
        "insufficient_credits",
        "INSUFFICIENT_CREDITS",
        format!("Insufficient credits. Balance: ${}.{:02}.", shown / 100, shown % 100),
    )
    .with_extra(json!({"balance_usd": dollars(balance_micros)}))
}

pub fn spending_cap(cap_micros: i64) -> ApiError {
    ApiError::new(
        402,
        "spending_cap_reached",
        "SPENDING_CAP_REACHED",
        format!("This period's overage would exceed the spending cap of ${:.2}.", dollars(cap_micros)),
    )
    .with_extra(json!({"spending_cap_usd": dollars(cap_micros)}))
}

fn max_output(body: &Value, model: &Model) -> u64 {
    ["max_tokens", "max_completion_tokens"].iter().find_map(|f| body[*f].as_u64()).unwrap_or(model.default_max_output)
}

/// The worst case of a request: generous input estimate plus its output cap.
pub fn estimate(model: &Model, body: &Value, body_bytes: u64, markup_bps: u32) -> Estimate {
    let input = estimate_input_tokens(body_bytes);
    let out = max_output(body, model);
    Estimate { input_tokens: input, max_output_tokens: out, cost_micros: cost_micros(&model.price, input, 0, out, markup_bps) }
}

/// The wallet could not be reached: nothing was reserved or charged.
pub fn unavailable() -> ApiError {
    ApiError::unavailable("wallet_unavailable", "Billing is unavailable; nothing was charged. Retry shortly.")
}

/// `PLAN_INCLUDED_TOKENS` when configured (local stacks and tests).
pub fn included_tokens(env: &Env) -> Option<u64> {
    crate::config::Config::new(env).get("PLAN_INCLUDED_TOKENS").and_then(|v| v.parse::<u64>().ok())
}

pub async fn reserve(
    env: &Env,
    request_id: &str,
    account_id: &str,
    plan: &str,
    estimate: &Estimate,
    ttl_ms: i64,
) -> Result<Reservation, ApiError> {
    let included_tokens = included_tokens(env);
    let call = json!({"request_id": request_id, "plan": plan, "estimate": estimate, "now_ms": logging::now_ms(), "ttl_ms": ttl_ms, "included_tokens": included_tokens});
    let (status, answer) = durable::call::<Value>(env, "WALLET", account_id, Method::Post, "/reserve", Some(&call)).await.map_err(|e| {
        logging::emit(logging::error("wallet.unreachable").field("detail", e.to_string()));
        unavailable()
    })?;
    match status {
        200 => Ok(Reservation {
            request_id: request_id.to_string(),
            account_id: account_id.to_string(),
            plan: plan.to_string(),
            included_tokens,
            available_after_micros: answer["wallet"]["available_micros"].as_i64().unwrap_or(0),
        }),
        402 => match answer["refusal"]["reason"].as_str() {
            Some("spending_cap") => Err(spending_cap(answer["refusal"]["cap_micros"].as_i64().unwrap_or(0))),
            _ => Err(insufficient(answer["refusal"]["balance_micros"].as_i64().unwrap_or(0))),
        },
        409 => Err(ApiError::conflict("duplicate_request", "This request id was already served.")),
        _ => Err(ApiError::internal()),
    }
}

/// Settles to the real usage. Idempotent: a replay returns the first charge.
pub async fn settle(env: &Env, r: &Reservation, usage: &Usage, model_cost_micros: i64) -> Result<Settled, String> {
    let actual = Actual { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens, cost_micros: model_cost_micros };
    let call = json!({"request_id": r.request_id, "plan": r.plan, "actual": actual, "now_ms": logging::now_ms(), "included_tokens": r.included_tokens});
    let (status, answer) =
        durable::call::<Value>(env, "WALLET", &r.account_id, Method::Post, "/settle", Some(&call)).await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("wallet answered {status}"));
    }
    let charge = &answer["charge"];
    Ok(Settled {
        charged_micros: charge["prepaid_micros"].as_i64().unwrap_or(0) + charge["overage_micros"].as_i64().unwrap_or(0),
        balance_micros: answer["wallet"]["balance_micros"].as_i64().unwrap_or(0),
        low_balance_crossed: answer["low_balance_crossed"].as_bool().unwrap_or(false),
        expired: charge["expired"].as_bool().unwrap_or(false),
    })
}

/// Once per crossing below the low-balance line: a `low_balance` job.
pub async fn after_settle(env: &Env, account_id: &str, s: &Settled) {
    if s.low_balance_crossed {
        let job = dex_queues::Job::LowBalance { account_id: account_id.to_string(), balance_micros: s.balance_micros };
        if let Err(e) = crate::jobs::enqueue(env, job, dex_queues::Trigger::System).await {
            logging::emit(logging::error("wallet.low_balance_enqueue_failed").field("detail", e.to_string()));
        }
    }
}

/// Nothing was served: the hold goes back.
pub async fn release(env: &Env, r: &Reservation) {
    let call = json!({"request_id": r.request_id});
    if let Err(e) = durable::call::<Value>(env, "WALLET", &r.account_id, Method::Post, "/release", Some(&call)).await {
        // The alarm settles it at the reserved amount later; log for reconciliation.
        logging::emit(logging::error("wallet.release_failed").field("request_id", r.request_id.as_str()).field("detail", e.to_string()));
    }
}
