//! Usage reports: the Dexto CLI's `/me/usage` shape (and its aliases), the
//! seed's flat fields, and the operators' aggregate.

use dex_shared::error::ApiError;
use dex_shared::money::micros_to_usd_string;
use dex_shared::time::{month_start, parse_instant, rfc3339};
use serde_json::{json, Map, Value};
use worker::{Method, Request};

use crate::auth::Principal;
use crate::durable;
use crate::edge::{json_response, limit_param, query_param, Ctx, HandlerResult, OrInternal};
use crate::repositories::usage as repo;

/// Dollars as a JSON number for clients that read numbers (the Dexto CLI
/// does); the exact amount is also given as a decimal string.
fn usd(micros: i64) -> Value {
    serde_json::Number::from_f64(micros as f64 / 1_000_000.0).map(Value::Number).unwrap_or(Value::Null)
}

fn period(ctx: &Ctx, req: &Request) -> Result<(i64, i64, u32), ApiError> {
    let now = ctx.now_ms();
    let bad =
        |p: &'static str| ApiError::bad_request("invalid_period", format!("{p} must be epoch milliseconds or a date like 2026-11-01"));
    let start = match query_param(req, "start") {
        Some(s) => parse_instant(&s).ok_or_else(|| bad("start"))?,
        None => month_start(now),
    };
    let end = match query_param(req, "end") {
        Some(s) => parse_instant(&s).ok_or_else(|| bad("end"))?,
        None => now + 1,
    };
    if end <= start {
        return Err(ApiError::bad_request("invalid_period", "end must be after start"));
    }
    let limit = limit_param(req, 20, 200)?;
    Ok((start, end, limit))
}

/// The wallet's own summary (balance, holds, allowance, overage).
pub async fn wallet_summary(ctx: &Ctx, account_id: &str) -> Result<Value, ApiError> {
    // What this isolate spent under its lease is reported first.
    crate::meter::settle_account(&ctx.env, account_id).await;
    let (status, body) =
        durable::call::<Value>(&ctx.env, "WALLET", account_id, Method::Get, "/balance", None).await.or_internal("wallet balance")?;
    match (status, body["balance_micros"].as_i64()) {
        (200, Some(_)) => Ok(body),
        _ => Err(ApiError::internal()),
    }
}

pub async fn balance_micros(ctx: &Ctx, account_id: &str) -> Result<i64, ApiError> {
    Ok(wallet_summary(ctx, account_id).await?["balance_micros"].as_i64().unwrap_or(0))
}

/// `GET /me/usage` (and `/api/account/usage`, `/v1/usage`, `/v1/billing/usage`).
pub async fn mine(ctx: &Ctx, who: &Principal, req: &Request) -> HandlerResult {
    let (start, end, limit) = period(ctx, req)?;
    crate::meter::settle_account(&ctx.env, &who.account_id).await;
    let db = ctx.db()?;
    let totals = repo::totals_by_model(&db, &who.account_id, start, end).await.or_internal("usage totals")?;
    let recent = repo::recent(&db, &who.account_id, start, end, limit).await.or_internal("usage recent")?;
    let balance = balance_micros(ctx, &who.account_id).await?;
    let total_cost: i64 = totals.iter().map(|t| t.cost_micros).sum();
    let total_requests: i64 = totals.iter().map(|t| t.requests).sum();
    let mut by_model = Map::new();
    for t in &totals {
        by_model.insert(t.model.clone(), json!({"requests": t.requests, "cost_usd": usd(t.cost_micros), "tokens": t.tokens}));
    }
    let by_model = Value::Object(by_model);
    json_response(
        200,
        &json!({
            "credits_usd": usd(balance),
            "mtd_usage": {"total_cost_usd": usd(total_cost), "total_requests": total_requests, "by_model": by_model},
            "recent": recent.iter().map(|r| json!({
                "timestamp": rfc3339(r.created_at), "model": r.model, "cost_usd": usd(r.cost_micros),
                "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "request_id": r.request_id, "estimated": r.estimated == 1,
            })).collect::<Vec<_>>(),
            // The seed's flat fields, exact as decimal strings.
            "balance": micros_to_usd_string(balance),
            "total_cost": micros_to_usd_string(total_cost),
            "total_requests": total_requests,
            "by_model": by_model,
            "period": {"start": rfc3339(start), "end": rfc3339(end)},
        }),
    )
}

/// `GET /api/billing/balance` (Dexto CLI `dexto billing`).
pub async fn billing_balance(ctx: &Ctx, who: &Principal) -> HandlerResult {
    let b = balance_micros(ctx, &who.account_id).await?;
    json_response(200, &json!({"credits_usd": usd(b), "balance": micros_to_usd_string(b)}))
}

/// `GET /v1/admin/usage`: every account, by model, for the period.
pub async fn admin(ctx: &Ctx, req: &Request) -> HandlerResult {
    let (start, end, _) = period(ctx, req)?;
    crate::meter::write_usage(&ctx.env).await;
    let totals = repo::totals_all(&ctx.db()?, start, end).await.or_internal("usage totals")?;
    let mut by_model = Map::new();
    for t in &totals {
        by_model.insert(
            t.model.clone(),
            json!({"requests": t.requests, "cost_usd": usd(t.cost_micros), "cost_micros": t.cost_micros, "tokens": t.tokens}),
        );
    }
    json_response(
        200,
        &json!({
            "total_requests": totals.iter().map(|t| t.requests).sum::<i64>(),
            "total_cost": micros_to_usd_string(totals.iter().map(|t| t.cost_micros).sum::<i64>()),
            "by_model": by_model,
            "period": {"start": rfc3339(start), "end": rfc3339(end)},
        }),
    )
}
