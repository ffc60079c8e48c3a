//! `usage_ledger` (one row per metered request, idempotent by request id)
//! and `usage_monthly` (kept current in the same batch).

use dex_shared::time::month_key;
use worker::D1Database;

use super::{int, opt_text, text};

#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub request_id: String,
    pub account_id: String,
    pub api_key_id: Option<String>,
    pub model: String,
    pub provider: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub status: u16,
    pub estimated: bool,
    pub created_at: i64,
}

/// Writes the ledger row and, only if it was new, adds it to the month.
pub async fn record(db: &D1Database, r: &UsageRecord) -> worker::Result<()> {
    let ledger = db
        .prepare(
            "INSERT OR IGNORE INTO usage_ledger (request_id, account_id, api_key_id, kind, model, provider, input_tokens, output_tokens, cached_tokens, cost_micros, latency_ms, status, estimated, created_at) \
             VALUES (?1, ?2, ?3, 'ai_request', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .bind(&[
            text(&r.request_id),
            text(&r.account_id),
            opt_text(r.api_key_id.as_deref()),
            text(&r.model),
            text(&r.provider),
            int(r.input_tokens as i64),
            int(r.output_tokens as i64),
            int(r.cached_tokens as i64),
            int(r.cost_micros),
            int(r.latency_ms),
            int(r.status as i64),
            int(r.estimated as i64),
            int(r.created_at),
        ])?;
    // `changes()` of the previous statement says whether the ledger row is new,
    // so a replayed record never counts twice in the month.
    let month = db
        .prepare(
            "INSERT INTO usage_monthly (account_id, month, requests, input_tokens, output_tokens, cached_tokens, cost_micros, updated_at) \
             SELECT ?1, ?2, 1, ?3, ?4, ?5, ?6, ?7 WHERE changes() = 1 \
             ON CONFLICT(account_id, month) DO UPDATE SET requests = requests + 1, input_tokens = input_tokens + excluded.input_tokens, \
               output_tokens = output_tokens + excluded.output_tokens, cached_tokens = cached_tokens + excluded.cached_tokens, \
               cost_micros = cost_micros + excluded.cost_micros, updated_at = excluded.updated_at",
        )
        .bind(&[
            text(&r.account_id),
            text(&month_key(r.created_at)),
            int(r.input_tokens as i64),
            int(r.output_tokens as i64),
            int(r.cached_tokens as i64),
            int(r.cost_micros),
            int(r.created_at),
        ])?;
    db.batch(vec![ledger, month]).await.map(|_| ())
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct UpstreamKeyRow {
    pub sealed_key: String,
}

pub async fn upstream_key(db: &D1Database, account_id: &str, provider: &str) -> worker::Result<Option<UpstreamKeyRow>> {
    db.prepare("SELECT sealed_key FROM upstream_keys WHERE account_id = ?1 AND provider = ?2")
        .bind(&[text(account_id), text(provider)])?
        .first::<UpstreamKeyRow>(None)
        .await
}

/// Stores a minted key unless another request stored one first; true if ours won.
pub async fn store_upstream_key(
    db: &D1Database,
    account_id: &str,
    provider: &str,
    key_ref: &str,
    sealed: &str,
    limit_micros: Option<i64>,
    now_ms: i64,
) -> worker::Result<bool> {
    let r = db
        .prepare("INSERT OR IGNORE INTO upstream_keys (account_id, provider, key_ref, sealed_key, limit_micros, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .bind(&[text(account_id), text(provider), text(key_ref), text(sealed), limit_micros.map(int).unwrap_or(wasm_bindgen::JsValue::NULL), int(now_ms)])?
        .run()
        .await?;
    Ok(super::changes(&r) == 1)
}
