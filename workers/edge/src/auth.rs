//! Who is calling: API keys (cached key context), session access tokens
//! (JWT), operators, the bootstrap secret, and the limiters in front of them.

use dex_shared::error::ApiError;
use dex_shared::jwt::{self, AccessClaims, SigningKeys};
use dex_shared::keys::{constant_time_eq, keyed_hash, looks_like_api_key};
use dex_shared::ratelimit::{global_shard_rule, plan_limits, BucketRule, Decision, GLOBAL_PER_MINUTE, GLOBAL_SHARDS};
use serde_json::json;
use worker::{Method, Request};

use crate::durable;
use crate::edge::{bearer, header, Ctx, OrInternal};
use crate::logging;
use crate::repositories::accounts;
use crate::repositories::api_keys::{self, KeyContext};

/// Key contexts are cached in KV this long; revoke, rotate and suspension
/// delete the entry at once.
const KEY_CACHE_TTL_SECS: u64 = 60;
/// …and inside the isolate this long (no KV read at all on a hit). Revoke,
/// rotate and suspension evict it here too; another isolate may accept a
/// revoked key for at most this long, less than KV's own propagation delay.
const KEY_MEMO_TTL_MS: i64 = 10_000;
const KEY_MEMO_MAX: usize = 10_000;

thread_local! {
    static KEY_MEMO: std::cell::RefCell<std::collections::HashMap<String, (KeyContext, i64)>> = Default::default();
    /// Moves on at every eviction: a lookup that began before an eviction
    /// (its KV or D1 read may predate a revocation) is not remembered.
    static KEY_MEMO_EPOCH: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn memo_epoch() -> u64 {
    KEY_MEMO_EPOCH.with(|e| e.get())
}

fn memo_get(hash: &str, now: i64) -> Option<KeyContext> {
    KEY_MEMO.with(|m| m.borrow().get(hash).filter(|(_, until)| *until > now).map(|(k, _)| k.clone()))
}

fn memo_put(hash: &str, key: &KeyContext, now: i64, epoch: u64) {
    if epoch != memo_epoch() {
        return;
    }
    KEY_MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= KEY_MEMO_MAX {
            m.retain(|_, (_, until)| *until > now);
            if m.len() >= KEY_MEMO_MAX {
                m.clear();
            }
        }
        m.insert(hash.to_string(), (key.clone(), now + KEY_MEMO_TTL_MS));
    });
}
/// `last_used_at` is written at most this often per key (not once per request).
const LAST_USED_EVERY_MS: i64 = 60_000;

/// The authenticated caller, however they authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub account_id: String,
    pub tenant_id: Option<String>,
    pub role: String,
    pub is_operator: bool,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub enum Via {
    Key(Box<KeyContext>),
    /// A session access token; `sid` is its session family.
    Session {
        sid: String,
    },
}

impl Principal {
    pub fn key(&self) -> Option<&KeyContext> {
        match &self.via {
            Via::Key(k) => Some(k),
            Via::Session { .. } => None,
        }
    }

    /// Owners and admins manage every key of their account; members their own.
    pub fn manages_account_keys(&self) -> bool {
        self.role == "owner" || self.role == "admin"
    }
}

impl From<KeyContext> for Principal {
    fn from(k: KeyContext) -> Self {
        Principal {
            user_id: k.user_id.clone(),
            account_id: k.account_id.clone(),
            tenant_id: k.tenant_id.clone(),
            role: k.role.clone(),
            is_operator: k.is_operator == 1,
            via: Via::Key(Box::new(k)),
        }
    }
}

pub fn key_cache_key(key_hash: &str) -> String {
    format!("keyctx:{key_hash}")
}

fn session_revoked_key(sid: &str) -> String {
    format!("sesrev:{sid}")
}

fn not_configured(name: &str) -> ApiError {
    logging::emit(logging::error("config.missing_secret").field("name", name));
    ApiError::unavailable("not_configured", "The service is not fully configured; try again later.")
}

pub fn hash_secret(ctx: &Ctx, secret: &str) -> Result<String, ApiError> {
    let pepper = ctx.config().key_pepper().ok_or_else(|| not_configured("KEY_PEPPER"))?;
    Ok(keyed_hash(pepper.as_bytes(), secret))
}

pub fn signing_keys(ctx: &Ctx) -> Result<SigningKeys, ApiError> {
    let spec = ctx.config().get("JWT_SIGNING_KEYS").ok_or_else(|| not_configured("JWT_SIGNING_KEYS"))?;
    SigningKeys::parse(&spec).map_err(|_| not_configured("JWT_SIGNING_KEYS"))
}

pub fn issue_access_token(ctx: &Ctx, claims: &AccessClaims) -> Result<String, ApiError> {
    jwt::issue(&signing_keys(ctx)?, claims, ctx.now_ms()).or_internal("sign access token")
}

/// Ends a session family's access tokens before they expire on their own.
pub async fn revoke_session_family(env: &worker::Env, sid: &str) -> Result<(), ApiError> {
    let kv = env.kv("CACHE").or_internal("binding CACHE")?;
    kv.put(&session_revoked_key(sid), "1")
        .or_internal("kv put")?
        .expiration_ttl((jwt::ACCESS_TTL_SECS + 60) as u64)
        .execute()
        .await
        .or_internal("kv put")
}

/// Forgets cached key contexts (after revoke, rotate, suspension).
pub async fn forget_keys(env: &worker::Env, key_hashes: &[String]) {
    KEY_MEMO_EPOCH.with(|e| e.set(e.get().wrapping_add(1)));
    KEY_MEMO.with(|m| {
        let mut m = m.borrow_mut();
        for h in key_hashes {
            m.remove(h);
        }
    });
    if let Ok(kv) = env.kv("CACHE") {
        for h in key_hashes {
            let _ = kv.delete(&key_cache_key(h)).await;
        }
    }
    // Again once KV is clear: a lookup that read KV meanwhile is not kept.
    KEY_MEMO_EPOCH.with(|e| e.set(e.get().wrapping_add(1)));
}

fn missing_credentials() -> ApiError {
    ApiError::unauthorized("Missing credentials. Send 'Authorization: Bearer <API key or session token>'.")
}

/// Authenticates an API key. 401 for a missing, malformed, unknown or revoked
/// key (one message for all, so probing learns nothing); 403 when the key is
/// good but its account is suspended.
pub async fn api_key(ctx: &Ctx, req: &Request) -> Result<KeyContext, ApiError> {
    let presented = bearer(req)
        .ok_or_else(|| ApiError::unauthorized("Missing API key. Send it as 'Authorization: Bearer pk_live_…' or 'x-api-key'."))?;
    key_context(ctx, &presented).await
}

pub async fn key_context(ctx: &Ctx, presented: &str) -> Result<KeyContext, ApiError> {
    if !looks_like_api_key(presented) {
        return Err(ApiError::unauthorized("Invalid API key."));
    }
    let hash = hash_secret(ctx, presented)?;
    let now = ctx.now_ms();
    if let Some(key) = memo_get(&hash, now) {
        return if key.account_status == "active" { Ok(key) } else { Err(suspended()) };
    }
    let epoch = memo_epoch();
    let kv = ctx.env.kv("CACHE").or_internal("binding CACHE")?;
    let cached = kv.get(&key_cache_key(&hash)).json::<KeyContext>().await.ok().flatten();
    let key = match cached {
        Some(k) => k,
        None => {
            let db = ctx.db()?;
            let k = api_keys::context_by_hash(&db, &hash, now)
                .await
                .or_internal("key lookup")?
                .ok_or_else(|| ApiError::unauthorized("Invalid API key."))?;
            if let Ok(put) = kv.put(&key_cache_key(&hash), &k) {
                // A failed cache write only costs a D1 read next time.
                let _ = put.expiration_ttl(KEY_CACHE_TTL_SECS).execute().await;
            }
            // Written on cache misses only, and only when stale: about once a
            // minute per key, never once per request.
            if k.last_used_at.is_none_or(|t| now - t >= LAST_USED_EVERY_MS) {
                let _ = api_keys::touch(&db, &k.key_id, now, LAST_USED_EVERY_MS).await;
            }
            k
        }
    };
    memo_put(&hash, &key, now, epoch);
    if key.account_status != "active" {
        return Err(suspended());
    }
    Ok(key)
}

fn suspended() -> ApiError {
    ApiError::forbidden("account_suspended", "This account is suspended. Contact support or settle the outstanding invoice.")
}

/// Authenticates a session access token (JWT).
pub async fn session(ctx: &Ctx, req: &Request) -> Result<Principal, ApiError> {
    let token = bearer(req).ok_or_else(missing_credentials)?;
    if looks_like_api_key(&token) {
        return Err(ApiError::unauthorized("This route needs a signed-in session, not an API key."));
    }
    session_from_token(ctx, &token).await
}

async fn session_from_token(ctx: &Ctx, token: &str) -> Result<Principal, ApiError> {
    let claims = jwt::verify(&signing_keys(ctx)?, token, ctx.now_ms()).map_err(|e| {
        logging::emit(logging::info("auth.token_refused").field("reason", e.to_string()));
        ApiError::new(401, "authentication_error", "invalid_token", "Invalid or expired session token.")
    })?;
    let kv = ctx.env.kv("CACHE").or_internal("binding CACHE")?;
    if kv.get(&session_revoked_key(&claims.sid)).text().await.ok().flatten().is_some() {
        return Err(ApiError::new(401, "authentication_error", "invalid_token", "This session has ended. Sign in again."));
    }
    // Suspension must bite within the token's lifetime too.
    let account = accounts::get(&ctx.db()?, &claims.account_id).await.or_internal("account lookup")?;
    match account {
        Some(a) if a.status == "active" => {}
        Some(_) => return Err(suspended()),
        None => return Err(ApiError::new(401, "authentication_error", "invalid_token", "Invalid or expired session token.")),
    }
    Ok(Principal {
        user_id: claims.sub,
        account_id: claims.account_id,
        tenant_id: claims.tenant_id,
        role: claims.role,
        is_operator: claims.op,
        via: Via::Session { sid: claims.sid },
    })
}

/// A session token or an API key, whichever was sent.
pub async fn user(ctx: &Ctx, req: &Request) -> Result<Principal, ApiError> {
    let token = bearer(req).ok_or_else(missing_credentials)?;
    if looks_like_api_key(&token) {
        Ok(Principal::from(key_context(ctx, &token).await?))
    } else {
        session_from_token(ctx, &token).await
    }
}

pub async fn operator(ctx: &Ctx, req: &Request) -> Result<Principal, ApiError> {
    let p = user(ctx, req).await?;
    if !p.is_operator {
        return Err(ApiError::forbidden("operator_required", "This route needs the operator role."));
    }
    Ok(p)
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

fn rule(ctx: &Ctx, prefix: &str, default: BucketRule) -> BucketRule {
    let c = ctx.config();
    BucketRule {
        per_minute: c.get_u64(&format!("{prefix}_PER_MINUTE"), default.per_minute as u64) as u32,
        burst: c.get_u64(&format!("{prefix}_BURST"), default.burst as u64) as u32,
    }
}

/// Takes `cost` from a bucket of a `LIMITER` object.
async fn take_from(ctx: &Ctx, object: &str, bucket: &str, rule: BucketRule, cost: u32) -> Result<Decision, ApiError> {
    let body = json!({"bucket": bucket, "rule": rule, "cost": cost, "now_ms": ctx.now_ms()});
    let (status, decision) =
        durable::call::<Decision>(&ctx.env, "LIMITER", object, Method::Post, "/take", Some(&body)).await.or_internal("limiter")?;
    if status != 200 {
        return Err(ApiError::internal());
    }
    Ok(decision)
}

fn refuse(decision: Decision) -> Result<Decision, ApiError> {
    if decision.allowed {
        Ok(decision)
    } else {
        Err(ApiError::rate_limited(decision.retry_after_secs()))
    }
}

/// Takes one request from the named object's bucket.
async fn take(ctx: &Ctx, object: &str, rule: BucketRule) -> Result<Decision, ApiError> {
    refuse(take_from(ctx, object, "requests", rule, 1).await?)
}

fn key_object(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// The service-wide ceiling: a batch from one of its shards (the next one
/// each time this isolate needs a batch).
async fn global_ceiling(ctx: &Ctx) -> Result<Decision, ApiError> {
    let rule = global_shard_rule(ctx.config().get_u64("GLOBAL_RATE_LIMIT_PER_MINUTE", GLOBAL_PER_MINUTE as u64) as u32);
    let shard = format!("global:{}", crate::meter::global_shard(GLOBAL_SHARDS));
    let d = crate::meter::take(&ctx.env, &shard, &[crate::meter::Take { bucket: "requests", rule, cost: 1 }]).await?;
    match d.first() {
        Some(d) if d.allowed => Ok(*d),
        Some(d) => {
            logging::emit(logging::warn("limits.global_ceiling").field("shard", shard));
            Err(ApiError::rate_limited(d.retry_after_secs()))
        }
        None => Err(ApiError::internal()),
    }
}

/// Per-key request limit (the plan's, unless configured) and the
/// service-wide ceiling, checked at once; 429 with `Retry-After` when either
/// bucket is empty. Both are taken in batches (`crate::meter`).
pub async fn rate_limit(ctx: &Ctx, key: &KeyContext) -> Result<Decision, ApiError> {
    let mine = rule(ctx, "RATE_LIMIT", plan_limits(&key.plan).requests);
    let takes = [crate::meter::Take { bucket: "requests", rule: mine, cost: 1 }];
    let (own, all) = futures_util::future::join(crate::meter::take(&ctx.env, &key_object(&key.key_id), &takes), global_ceiling(ctx)).await;
    all?;
    match own?.first() {
        Some(d) => refuse(*d),
        None => Err(ApiError::internal()),
    }
}

/// For the AI proxy: the key's request and tokens-per-minute buckets (all or
/// none), and the service-wide ceiling beside them. Returns the request
/// bucket's decision for the `x-ratelimit-*` headers.
pub async fn rate_limit_with_tokens(ctx: &Ctx, key: &KeyContext, tokens: u64) -> Result<Decision, ApiError> {
    let limits = plan_limits(&key.plan);
    let requests = rule(ctx, "RATE_LIMIT", limits.requests);
    let token_cost = tokens.min(limits.tokens.burst as u64) as u32;
    let takes = [
        crate::meter::Take { bucket: "requests", rule: requests, cost: 1 },
        crate::meter::Take { bucket: "tokens", rule: limits.tokens, cost: token_cost },
    ];
    let object = key_object(&key.key_id);
    let (own, all) = futures_util::future::join(crate::meter::take(&ctx.env, &object, &takes), global_ceiling(ctx)).await;
    all?;
    match own?.as_slice() {
        [req, _] if !req.allowed => Err(ApiError::rate_limited(req.retry_after_secs())),
        [_, tok] if !tok.allowed => {
            let mut e = ApiError::rate_limited(tok.retry_after_secs());
            e.code = "tokens_per_minute_exceeded";
            e.message = format!(
                "Token rate limit reached ({} tokens a minute). Retry after {} s.",
                limits.tokens.per_minute,
                tok.retry_after_secs()
            );
            Err(e)
        }
        [req, _] => Ok(*req),
        _ => Err(ApiError::internal()),
    }
}

/// …and what went unused goes back once the real count is known: to this
/// isolate's batch while it lasts, else to the key's object (a long stream).
pub async fn give_back_tokens(env: &worker::Env, key_id: &str, plan: &str, tokens: u64) {
    if tokens == 0 || crate::meter::give_back(&key_object(key_id), "tokens", tokens) {
        return;
    }
    let rule = plan_limits(plan).tokens;
    let body = json!({"bucket": "tokens", "rule": rule, "cost": tokens.min(u32::MAX as u64) as u32, "now_ms": logging::now_ms()});
    let _ = durable::call::<Decision>(env, "LIMITER", &key_object(key_id), Method::Post, "/give", Some(&body)).await;
}

fn client_ip(req: &Request) -> String {
    header(req, "cf-connecting-ip").unwrap_or_else(|| "unknown".into())
}

/// Password guessing is slowed per e-mail (5 at once, then 1 a minute) and
/// per client IP. The e-mail is hashed so bucket names hold no PII.
pub async fn throttle_login(ctx: &Ctx, req: &Request, identifier: &str) -> Result<(), ApiError> {
    let who = hash_secret(ctx, &identifier.to_ascii_lowercase())?;
    take(ctx, &format!("login-id:{who}"), rule(ctx, "LOGIN_ID", BucketRule { per_minute: 1, burst: 5 })).await?;
    throttle_ip(ctx, req).await
}

/// Sign-up, code sending and device starts: per client IP.
pub async fn throttle_ip(ctx: &Ctx, req: &Request) -> Result<(), ApiError> {
    take(ctx, &format!("login-ip:{}", client_ip(req)), rule(ctx, "LOGIN_IP", BucketRule { per_minute: 20, burst: 20 })).await.map(|_| ())
}

/// Looks the account up and refuses if it is not active.
pub async fn require_active_account(ctx: &Ctx, account_id: &str) -> Result<(), ApiError> {
    match accounts::get(&ctx.db()?, account_id).await.or_internal("account lookup")? {
        Some(a) if a.status == "active" => Ok(()),
        Some(_) => Err(suspended()),
        None => Err(ApiError::unauthorized("Invalid credentials.")),
    }
}
