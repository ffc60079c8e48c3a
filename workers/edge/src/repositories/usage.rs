//! `usage_ledger` (one row per metered request, idempotent by request id)
//! and `usage_monthly` (kept current in the same batch).

use dex_shared::time::month_key;
use worker::{D1Database, D1PreparedStatement};

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
    pub reconcile: bool,
    pub created_at: i64,
}

/// The ledger row and, only if it was new, its share of the month.
fn statements(db: &D1Database, r: &UsageRecord) -> worker::Result<[D1PreparedStatement; 2]> {
    let ledger = db
        .prepare(
            "INSERT OR IGNORE INTO usage_ledger (request_id, account_id, api_key_id, kind, model, provider, input_tokens, output_tokens, cached_tokens, cost_micros, latency_ms, status, estimated, created_at, reconcile) \
             VALUES (?1, ?2, ?3, 'ai_request', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
            int(r.reconcile as i64),
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
    Ok([ledger, month])
}

/// Writes the ledger row and, only if it was new, adds it to the month.
pub async fn record(db: &D1Database, r: &UsageRecord) -> worker::Result<()> {
    record_many(db, std::slice::from_ref(r)).await
}

/// Many rows in one batch (one transaction): how the proxy's usage buffer
/// is written.
pub async fn record_many(db: &D1Database, rows: &[UsageRecord]) -> worker::Result<()> {
    let mut all = Vec::with_capacity(rows.len() * 2);
    for r in rows {
        all.extend(statements(db, r)?);
    }
    if all.is_empty() {
        return Ok(());
    }
    db.batch(all).await.map(|_| ())
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

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ModelTotals {
    pub model: String,
    pub requests: i64,
    pub cost_micros: i64,
    pub tokens: i64,
}

/// Per-model totals of an account between two instants.
pub async fn totals_by_model(db: &D1Database, account_id: &str, start_ms: i64, end_ms: i64) -> worker::Result<Vec<ModelTotals>> {
    db.prepare(
        "SELECT model, COUNT(*) AS requests, SUM(cost_micros) AS cost_micros, SUM(input_tokens + output_tokens) AS tokens \
         FROM usage_ledger WHERE account_id = ?1 AND created_at >= ?2 AND created_at < ?3 GROUP BY model ORDER BY model",
    )
    .bind(&[text(account_id), int(start_ms), int(end_ms)])?
    .all()
    .await?
    .results::<ModelTotals>()
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct RecentRow {
    pub request_id: String,
    pub created_at: i64,
    pub model: String,
    pub cost_micros: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub estimated: i64,
}

pub async fn recent(db: &D1Database, account_id: &str, start_ms: i64, end_ms: i64, limit: u32) -> worker::Result<Vec<RecentRow>> {
    db.prepare(
        "SELECT request_id, created_at, model, cost_micros, input_tokens, output_tokens, estimated FROM usage_ledger \
         WHERE account_id = ?1 AND created_at >= ?2 AND created_at < ?3 ORDER BY created_at DESC LIMIT ?4",
    )
    .bind(&[text(account_id), int(start_ms), int(end_ms), int(limit as i64)])?
    .all()
    .await?
    .results::<RecentRow>()
}

/// All accounts' totals between two instants (operators).
pub async fn totals_all(db: &D1Database, start_ms: i64, end_ms: i64) -> worker::Result<Vec<ModelTotals>> {
    db.prepare(
        "SELECT model, COUNT(*) AS requests, SUM(cost_micros) AS cost_micros, SUM(input_tokens + output_tokens) AS tokens \
         FROM usage_ledger WHERE created_at >= ?1 AND created_at < ?2 GROUP BY model ORDER BY model",
    )
    .bind(&[int(start_ms), int(end_ms)])?
    .all()
    .await?
    .results::<ModelTotals>()
}
