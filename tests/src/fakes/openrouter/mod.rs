//! Fake of OpenRouter's API under `/openrouter/api`: the OpenAI-compatible
//! routes of [`super::openai`], plus the key-management ("provisioning")
//! API that mints keys for customers.
//!
//! Key management, paths relative to the mount, each needing
//! `Authorization: Bearer <management key>` (any non-empty one; else 401
//! `{"error":{"code":401,"message":"No auth credentials found"}}`):
//! - `POST /v1/keys` `{"name", "limit"?, "limit_reset"?,
//!   "include_byok_in_limit"?, "expires_at"?}`: 201
//!   `{"data":<key>,"key":"sk-or-v1-<64 hex>"}`, the only answer with the
//!   key itself. No `name`: 400 `{"error":{"code":400,"message":…}}`.
//! - `GET /v1/keys[?offset=&include_disabled=true]`: `{"data":[<key>…]}`,
//!   newest first, 100 a page, disabled keys only when asked.
//! - `GET /v1/keys/{hash}`: `{"data":<key>}`; unknown or deleted: 404.
//! - `PATCH /v1/keys/{hash}` `{"name"?, "disabled"?, "limit"?,
//!   "limit_reset"?, "include_byok_in_limit"?}`: `{"data":<key>}`.
//! - `DELETE /v1/keys/{hash}`: `{"deleted":true}`.
//!
//! A `<key>` is [`wire::ApiKey`] (`hash`, `name`, `label`, `disabled`,
//! `limit`, `limit_remaining` = `limit`, `usage` 0, …). Minted keys live in
//! [`KeyStore`] (cleared by `/__fakes/reset`); tests read them, full keys
//! included, from `GET /__fakes/openrouter/keys`. The chat routes accept a
//! minted key like any other bearer (they accept any non-empty one).

pub mod wire;

#[cfg(test)]
mod selftest;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Number, Value};

use super::twilio::iso8601;
use super::{now_ms, now_secs, openai, AppState};
use wire::*;

/// Prefix of every minted key (then 64 lowercase hex digits).
pub const KEY_PREFIX: &str = "sk-or-v1-";
/// Keys per page of `GET /v1/keys`.
pub const PAGE_SIZE: usize = 100;
/// Accepted `limit_reset` values.
pub const LIMIT_RESETS: [&str; 3] = ["daily", "weekly", "monthly"];

// ------------------------------------------------------------------ routes

/// Everything under `/openrouter/api`: the OpenAI-compatible API and the
/// key-management API.
pub fn routes() -> Router<AppState> {
    openai::routes().merge(key_routes())
}

/// The key-management API alone (no fallback, so that it merges).
pub fn key_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(list_keys).post(create_key).fallback(method_not_allowed))
        .route("/v1/keys/", get(list_keys).post(create_key).fallback(method_not_allowed))
        .route("/v1/keys/{hash}", get(get_key).patch(update_key).delete(delete_key).fallback(method_not_allowed))
        .route_layer(from_fn(require_bearer))
}

// ------------------------------------------------------------------ errors

/// An OpenRouter error answer: `{"error":{"code":<status>,"message":…}}`.
#[derive(Debug, Clone)]
pub struct OpenRouterError {
    pub status: StatusCode,
    pub message: String,
}

impl OpenRouterError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.status.as_u16(), message: self.message.clone() } }
    }
}

impl IntoResponse for OpenRouterError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> OpenRouterError {
    OpenRouterError::new(StatusCode::BAD_REQUEST, message)
}

fn key_not_found() -> OpenRouterError {
    OpenRouterError::new(StatusCode::NOT_FOUND, "API key not found")
}

async fn method_not_allowed() -> OpenRouterError {
    OpenRouterError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

async fn require_bearer(req: Request, next: Next) -> Response {
    let authed = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty());
    if authed {
        return next.run(req).await;
    }
    OpenRouterError::new(StatusCode::UNAUTHORIZED, "No auth credentials found").into_response()
}

// ------------------------------------------------------------------- state

#[derive(Debug, Clone)]
struct StoredKey {
    key: String,
    hash: String,
    name: String,
    limit: Option<Number>,
    limit_reset: Option<String>,
    include_byok_in_limit: bool,
    disabled: bool,
    deleted: bool,
    created_at: String,
    updated_at: Option<String>,
    expires_at: Option<String>,
}

impl StoredKey {
    fn label(&self) -> String {
        let hex = self.key.strip_prefix(KEY_PREFIX).unwrap_or(&self.key);
        let head: String = hex.chars().take(3).collect();
        let tail: String = hex.chars().skip(hex.chars().count().saturating_sub(4)).collect();
        format!("{KEY_PREFIX}{head}...{tail}")
    }

    fn api(&self) -> ApiKey {
        ApiKey {
            hash: self.hash.clone(),
            name: self.name.clone(),
            label: self.label(),
            disabled: self.disabled,
            limit: self.limit.clone(),
            limit_remaining: self.limit.clone(),
            limit_reset: self.limit_reset.clone(),
            include_byok_in_limit: self.include_byok_in_limit,
            usage: 0,
            usage_daily: 0,
            usage_weekly: 0,
            usage_monthly: 0,
            byok_usage: 0,
            byok_usage_daily: 0,
            byok_usage_weekly: 0,
            byok_usage_monthly: 0,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            expires_at: self.expires_at.clone(),
        }
    }

    fn minted(&self) -> MintedKey {
        MintedKey {
            key: self.key.clone(),
            hash: self.hash.clone(),
            name: self.name.clone(),
            label: self.label(),
            limit: self.limit.clone(),
            limit_reset: self.limit_reset.clone(),
            include_byok_in_limit: self.include_byok_in_limit,
            disabled: self.disabled,
            deleted: self.deleted,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            expires_at: self.expires_at.clone(),
        }
    }
}

/// Keys minted on one fakes server, oldest first (deleted ones stay, marked).
#[derive(Debug, Default)]
pub struct KeyStore {
    keys: Mutex<Vec<StoredKey>>,
}

impl KeyStore {
    fn lock(&self) -> MutexGuard<'_, Vec<StoredKey>> {
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets every key.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Every minted key, oldest first, deleted ones included.
    pub fn list(&self) -> Vec<MintedKey> {
        self.lock().iter().map(StoredKey::minted).collect()
    }

    /// The minted key `key` (`sk-or-v1-…`), if any.
    pub fn find(&self, key: &str) -> Option<MintedKey> {
        self.lock().iter().find(|k| k.key == key).map(StoredKey::minted)
    }
}

// ---------------------------------------------------------------- handlers

/// The body as a JSON object, or a 400.
fn json_object(body: &Bytes) -> Result<Map<String, Value>, OpenRouterError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request("Invalid request body: expected a JSON object")),
        Err(e) => Err(bad_request(format!("Invalid JSON body: {e}"))),
    }
}

fn name_field(value: Option<&Value>) -> Result<Option<String>, OpenRouterError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(bad_request("name: must be a non-empty string")),
    }
}

/// `Some(None)` for an explicit `null`.
fn limit_field(value: Option<&Value>) -> Result<Option<Option<Number>>, OpenRouterError> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f >= 0.0) => Ok(Some(Some(n.clone()))),
        Some(_) => Err(bad_request("limit: must be a non-negative number or null")),
    }
}

fn limit_reset_field(value: Option<&Value>) -> Result<Option<Option<String>>, OpenRouterError> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if LIMIT_RESETS.contains(&s.as_str()) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(bad_request("limit_reset: must be one of daily, weekly, monthly, or null")),
    }
}

fn bool_field(value: Option<&Value>, name: &str) -> Result<Option<bool>, OpenRouterError> {
    match value {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad_request(format!("{name}: must be a boolean"))),
    }
}

fn expires_at_field(value: Option<&Value>) -> Result<Option<String>, OpenRouterError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.ends_with('Z') => Ok(Some(s.clone())),
        Some(_) => Err(bad_request("expires_at: must be an ISO 8601 UTC timestamp (ending in Z)")),
    }
}

async fn create_key(State(state): State<AppState>, body: Bytes) -> Result<Response, OpenRouterError> {
    let body = json_object(&body)?;
    let name = name_field(body.get("name"))?.ok_or_else(|| bad_request("name: Required"))?;
    let limit = limit_field(body.get("limit"))?.flatten();
    let limit_reset = limit_reset_field(body.get("limit_reset"))?.flatten();
    let include_byok_in_limit = bool_field(body.get("include_byok_in_limit"), "include_byok_in_limit")?.unwrap_or(false);
    let expires_at = expires_at_field(body.get("expires_at"))?;
    let stored = StoredKey {
        key: format!("{KEY_PREFIX}{}", random_hex64()),
        hash: random_hex64(),
        name,
        limit,
        limit_reset,
        include_byok_in_limit,
        disabled: false,
        deleted: false,
        created_at: iso8601(now_secs()),
        updated_at: None,
        expires_at,
    };
    let created = CreatedKey { data: stored.api(), key: stored.key.clone() };
    state.openrouter_keys.lock().push(stored);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_keys(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Result<Json<KeyList>, OpenRouterError> {
    let offset = match query.get("offset") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| bad_request("offset: must be a non-negative integer"))?,
    };
    let include_disabled = match query.get("include_disabled").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(bad_request("include_disabled: must be true or false")),
    };
    let keys = state.openrouter_keys.lock();
    let data = keys
        .iter()
        .rev()
        .filter(|k| !k.deleted && (include_disabled || !k.disabled))
        .skip(offset)
        .take(PAGE_SIZE)
        .map(StoredKey::api)
        .collect();
    Ok(Json(KeyList { data }))
}

async fn get_key(State(state): State<AppState>, Path(hash): Path<String>) -> Result<Json<KeyData>, OpenRouterError> {
    let keys = state.openrouter_keys.lock();
    keys.iter().find(|k| k.hash == hash && !k.deleted).map(|k| Json(KeyData { data: k.api() })).ok_or_else(key_not_found)
}

async fn update_key(State(state): State<AppState>, Path(hash): Path<String>, body: Bytes) -> Result<Json<KeyData>, OpenRouterError> {
    let body = json_object(&body)?;
    let name = name_field(body.get("name"))?;
    let disabled = bool_field(body.get("disabled"), "disabled")?;
    let limit = limit_field(body.get("limit"))?;
    let limit_reset = limit_reset_field(body.get("limit_reset"))?;
    let include_byok_in_limit = bool_field(body.get("include_byok_in_limit"), "include_byok_in_limit")?;
    let mut keys = state.openrouter_keys.lock();
    let key = keys.iter_mut().find(|k| k.hash == hash && !k.deleted).ok_or_else(key_not_found)?;
    if let Some(name) = name {
        key.name = name;
    }
    if let Some(disabled) = disabled {
        key.disabled = disabled;
    }
    if let Some(limit) = limit {
        key.limit = limit;
    }
    if let Some(limit_reset) = limit_reset {
        key.limit_reset = limit_reset;
    }
    if let Some(include) = include_byok_in_limit {
        key.include_byok_in_limit = include;
    }
    key.updated_at = Some(iso8601(now_secs()));
    Ok(Json(KeyData { data: key.api() }))
}

async fn delete_key(State(state): State<AppState>, Path(hash): Path<String>) -> Result<Json<Deleted>, OpenRouterError> {
    let mut keys = state.openrouter_keys.lock();
    let key = keys.iter_mut().find(|k| k.hash == hash && !k.deleted).ok_or_else(key_not_found)?;
    key.deleted = true;
    key.updated_at = Some(iso8601(now_secs()));
    Ok(Json(Deleted { deleted: true }))
}

// ----------------------------------------------------------- control plane

/// `GET /__fakes/openrouter/keys`: every key minted since the last reset,
/// oldest first, with the full key (deleted ones marked `deleted`).
pub(crate) async fn minted_keys_handler(State(state): State<AppState>) -> Json<MintedKeys> {
    Json(MintedKeys { keys: state.openrouter_keys.list() })
}

// ----------------------------------------------------------------- helpers

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u64(now_ms());
    hasher.finish()
}

/// 64 random lowercase hex digits.
fn random_hex64() -> String {
    format!("{:016x}{:016x}{:016x}{:016x}", random_u64(), random_u64(), random_u64(), random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_hex() {
        let hex = random_hex64();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(hex, random_hex64());
        let key = StoredKey {
            key: format!("{KEY_PREFIX}0e6f44a47a05f1dad2ad7e88c4c1d6b77688157716fb1a5271146f7464951c96"),
            hash: hex,
            name: "n".into(),
            limit: None,
            limit_reset: None,
            include_byok_in_limit: false,
            disabled: false,
            deleted: false,
            created_at: String::new(),
            updated_at: None,
            expires_at: None,
        };
        assert_eq!(key.label(), "sk-or-v1-0e6...1c96");
    }

    #[test]
    fn field_checks() {
        assert!(name_field(Some(&Value::String(" ".into()))).is_err());
        assert_eq!(limit_field(Some(&Value::Null)).ok(), Some(Some(None)));
        assert!(limit_field(Some(&serde_json::json!(-1))).is_err());
        assert!(limit_field(Some(&serde_json::json!("5"))).is_err());
        assert_eq!(limit_reset_field(Some(&serde_json::json!("weekly"))).ok(), Some(Some(Some("weekly".into()))));
        assert!(limit_reset_field(Some(&serde_json::json!("yearly"))).is_err());
        assert!(expires_at_field(Some(&serde_json::json!("2027-01-01T00:00:00+02:00"))).is_err());
    }
}
