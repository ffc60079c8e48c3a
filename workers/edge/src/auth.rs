//! Who is calling: API keys (cached key context), operators, the bootstrap
//! secret, and the per-key rate limit.

use dex_shared::error::ApiError;
use dex_shared::keys::{constant_time_eq, keyed_hash, looks_like_api_key};
use dex_shared::ratelimit::{BucketRule, Decision};
use serde_json::json;
use worker::{Method, Request};

use crate::durable;
use crate::edge::{bearer, Ctx, OrInternal};
use crate::repositories::api_keys::{self, KeyContext};

/// Key contexts are cached this long; revocation deletes the entry at once.
const KEY_CACHE_TTL_SECS: u64 = 60;

fn cache_key(key_hash: &str) -> String {
    format!("keyctx:{key_hash}")
}

fn pepper(ctx: &Ctx) -> Result<String, ApiError> {
    ctx.config().key_pepper().ok_or_else(|| {
        crate::logging::emit(crate::logging::error("config.missing_secret").field("name", "KEY_PEPPER"));
        ApiError::unavailable("not_configured", "API keys cannot be checked: the service is not configured.")
    })
}

pub fn hash_key(ctx: &Ctx, full_key: &str) -> Result<String, ApiError> {
    Ok(keyed_hash(pepper(ctx)?.as_bytes(), full_key))
}

/// Authenticates the request's API key. 401 for a missing, malformed,
/// unknown or revoked key (the same message for each, so nothing is learned
/// by probing); 403 when the key is good but its account is suspended.
pub async fn api_key(ctx: &Ctx, req: &Request) -> Result<KeyContext, ApiError> {
    let presented = bearer(req)
        .ok_or_else(|| ApiError::unauthorized("Missing API key. Send it as 'Authorization: Bearer pk_live_…' or 'x-api-key'."))?;
    if !looks_like_api_key(&presented) {
        return Err(ApiError::unauthorized("Invalid API key."));
    }
    let hash = hash_key(ctx, &presented)?;
    let kv = ctx.env.kv("CACHE").or_internal("binding CACHE")?;
    let cached = kv.get(&cache_key(&hash)).json::<KeyContext>().await.ok().flatten();
    let key = match cached {
        Some(k) => k,
        None => {
            let found = api_keys::context_by_hash(&ctx.db()?, &hash, ctx.now_ms()).await.or_internal("key lookup")?;
            let k = found.ok_or_else(|| ApiError::unauthorized("Invalid API key."))?;
            if let Ok(put) = kv.put(&cache_key(&hash), &k) {
                // A failed cache write only costs a D1 read next time.
                let _ = put.expiration_ttl(KEY_CACHE_TTL_SECS).execute().await;
            }
            k
        }
    };
    if key.account_status != "active" {
        return Err(ApiError::forbidden(
            "account_suspended",
            "This account is suspended. Contact support or settle the outstanding invoice.",
        ));
    }
    Ok(key)
}

pub async fn operator(ctx: &Ctx, req: &Request) -> Result<KeyContext, ApiError> {
    let key = api_key(ctx, req).await?;
    if key.is_operator != 1 {
        return Err(ApiError::forbidden("operator_required", "This route needs the operator role."));
    }
    Ok(key)
}

/// The `ADMIN_BOOTSTRAP_TOKEN` secret, compared in constant time.
pub fn bootstrap_token(ctx: &Ctx, req: &Request) -> Result<(), ApiError> {
    let Some(expected) = ctx.config().get("ADMIN_BOOTSTRAP_TOKEN") else {
        return Err(ApiError::forbidden("bootstrap_disabled", "Bootstrap is disabled: ADMIN_BOOTSTRAP_TOKEN is not set."));
    };
    let presented = bearer(req).unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::unauthorized("Invalid bootstrap token."));
    }
    Ok(())
}

pub fn request_rule(ctx: &Ctx) -> BucketRule {
    let c = ctx.config();
    let d = BucketRule::DEFAULT_REQUESTS;
    BucketRule {
        per_minute: c.get_u64("RATE_LIMIT_PER_MINUTE", d.per_minute as u64) as u32,
        burst: c.get_u64("RATE_LIMIT_BURST", d.burst as u64) as u32,
    }
}

/// Takes one request from the key's bucket; 429 with `Retry-After` when empty.
pub async fn rate_limit(ctx: &Ctx, key: &KeyContext) -> Result<Decision, ApiError> {
    let rule = request_rule(ctx);
    let body = json!({"rule": rule, "cost": 1, "now_ms": ctx.now_ms()});
    let (status, decision) =
        durable::call::<Decision>(&ctx.env, "LIMITER", &key.key_id, Method::Post, "/take", Some(&body)).await.or_internal("limiter")?;
    if status != 200 {
        return Err(ApiError::internal());
    }
    if !decision.allowed {
        return Err(ApiError::rate_limited(decision.retry_after_secs()));
    }
    Ok(decision)
}
