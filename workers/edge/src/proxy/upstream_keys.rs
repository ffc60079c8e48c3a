//! Per-account OpenRouter keys (Dexto): minted on first use with a spending
//! limit, stored sealed (AES-256-GCM, bound to the account), never returned
//! or logged. Off unless `OPENROUTER_PER_ACCOUNT_KEYS` is "true".

use dex_shared::crypto;
use dex_shared::error::ApiError;

use crate::edge::{Ctx, OrInternal};
use crate::ids::random_bytes;
use crate::logging;
use crate::providers::openrouter;
use crate::repositories::usage as repo;

pub async fn for_account(ctx: &Ctx, account_id: &str) -> Result<Option<String>, ApiError> {
    let c = ctx.config();
    if c.get("OPENROUTER_PER_ACCOUNT_KEYS").as_deref() != Some("true") {
        return Ok(None);
    }
    let misconfigured = |what: &str| {
        logging::emit(logging::error("config.missing_secret").field("name", what));
        ApiError::unavailable("not_configured", "Per-account upstream keys are not configured.")
    };
    let key = crypto::parse_key(&c.get("ENCRYPTION_KEY").ok_or_else(|| misconfigured("ENCRYPTION_KEY"))?)
        .map_err(|_| misconfigured("ENCRYPTION_KEY"))?;
    let db = ctx.db()?;
    if let Some(row) = repo::upstream_key(&db, account_id, "openrouter").await.or_internal("upstream key")? {
        let plain = crypto::open(&key, &row.sealed_key, account_id.as_bytes()).map_err(|_| {
            logging::emit(logging::error("upstream_key.unsealable").field("account_id", account_id));
            ApiError::internal()
        })?;
        return String::from_utf8(plain).map(Some).map_err(|_| ApiError::internal());
    }
    let base = c.base_url("OPENROUTER_BASE_URL").ok_or_else(|| misconfigured("OPENROUTER_BASE_URL"))?;
    let provisioning = c.get("OPENROUTER_PROVISIONING_KEY").ok_or_else(|| misconfigured("OPENROUTER_PROVISIONING_KEY"))?;
    let limit_micros = c.get("OPENROUTER_ACCOUNT_LIMIT_USD").and_then(|v| dex_shared::money::parse_usd(&v));
    // OpenRouter takes the limit as a JSON number of dollars.
    let limit_usd = limit_micros.map(|m| m as f64 / 1_000_000.0);
    let minted = openrouter::mint(&base, &provisioning, &format!("dex-edge {account_id}"), limit_usd).await.map_err(|e| {
        logging::emit(logging::warn("upstream_key.mint_failed").field("detail", e));
        ApiError::upstream(502, "Could not provision an upstream key for this account.")
    })?;
    let sealed =
        crypto::seal(&key, &random_bytes::<12>(), minted.key.as_bytes(), account_id.as_bytes()).map_err(|_| ApiError::internal())?;
    if repo::store_upstream_key(&db, account_id, "openrouter", &minted.hash, &sealed, limit_micros, ctx.now_ms())
        .await
        .or_internal("store upstream key")?
    {
        logging::emit(logging::info("upstream_key.minted").field("account_id", account_id));
        return Ok(Some(minted.key));
    }
    // Another request stored one first: use that, delete ours.
    openrouter::delete(&base, &provisioning, &minted.hash).await;
    let row = repo::upstream_key(&db, account_id, "openrouter").await.or_internal("upstream key")?.ok_or_else(ApiError::internal)?;
    let plain = crypto::open(&key, &row.sealed_key, account_id.as_bytes()).map_err(|_| ApiError::internal())?;
    String::from_utf8(plain).map(Some).map_err(|_| ApiError::internal())
}
