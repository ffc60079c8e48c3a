//! Fake of Stripe's v1 API (customers, Checkout, the billing portal,
//! subscriptions, Billing meter events) and of its webhooks, signed as
//! Stripe signs them.
//!
//! Mounted at `/stripe`, paths relative to it, every one needing a secret
//! or restricted key (`Authorization: Bearer sk_…`/`rk_…`, or Basic with the
//! key as user name); else 401 `invalid_request_error` "You did not provide
//! an API key…" (or "Invalid API Key provided…"). Bodies are
//! `application/x-www-form-urlencoded` with Stripe's brackets
//! (`line_items[0][price_data][unit_amount]=500`, `metadata[k]=v`).
//! - `POST /v1/customers` (`email`, `name`, `metadata`, …) → `cus_fake_…`;
//!   `GET /v1/customers/{id}`.
//! - `POST /v1/checkout/sessions` (`mode`, `line_items` with `price_data`
//!   or `price` and `quantity`, `success_url`, `cancel_url`, `customer` or
//!   `customer_email`, `client_reference_id`, `metadata`,
//!   `subscription_data[metadata]`, …) → an `open`, `unpaid`
//!   `checkout.session` `cs_test_…` with its hosted `url`;
//!   `GET /v1/checkout/sessions/{id}` (`expand[]=line_items|customer|subscription`),
//!   `GET /v1/checkout/sessions/{id}/line_items`,
//!   `POST /v1/checkout/sessions/{id}/expire`.
//! - `POST /v1/billing_portal/sessions` (`customer`, `return_url`) → `bps_…`.
//! - `GET /v1/subscriptions/{id}`: subscriptions made by completing a
//!   subscription-mode session, or sent in events.
//! - `POST /v1/billing/meter_events` (`event_name`, `payload[…]`,
//!   `identifier`, `timestamp`) → a `billing.meter_event`. An identifier
//!   already accepted is refused as Stripe does: 400 `invalid_request_error`
//!   "An event already exists with identifier …" with
//!   `Stripe-Should-Retry: false`; the event is stored once.
//! - `GET /v1/events/{id}`: any event the fake built.
//! - Anything else: 404 "Unrecognized request URL (GET: /v1/xyz)…".
//!
//! Unknown top-level parameters of a write are refused (400
//! `parameter_unknown`), as Stripe does. A `customer` id the fake does not
//! know but that starts with `cus_` is adopted rather than refused (the
//! fakes forget their customers on restart, the Worker's database does not).
//!
//! `Idempotency-Key` on a `POST`: a successful answer is kept, and the same
//! key on the same endpoint with the same parameters answers it again
//! (`Idempotent-Replayed: true`); with another endpoint or other parameters,
//! 400 `idempotency_error`. Errors are not kept (Stripe keeps no result for
//! requests that fail validation).
//!
//! Control plane (see [`control_routes`]): complete a session (which builds,
//! signs and POSTs `checkout.session.completed`, and
//! `customer.subscription.created` in subscription mode), send any event,
//! read meter events, events, sessions and subscriptions. Ids never repeat
//! within a process, resets included, and carry a per-process tag.

pub mod wire;

#[cfg(test)]
mod selftest;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use serde_json::{json, Map, Value};

use super::{control_error, now_ms, now_secs, AppState, RequestInfo};
use wire::*;

/// `api_version` of the events built (the version the Worker pins).
pub const API_VERSION: &str = "2025-09-30.clover";
/// Deliveries of one event at most, per control call.
pub const MAX_DELIVERIES: u32 = 100;
/// `current_period_end - current_period_start` of new subscriptions.
pub const PERIOD_SECS: i64 = 30 * 86_400;
/// `expires_at - created` of new Checkout Sessions.
pub const SESSION_TTL_SECS: i64 = 24 * 3_600;
/// Oldest meter event timestamp accepted (35 days), and the newest (5 min
/// ahead).
pub const METER_MAX_AGE_SECS: i64 = 35 * 86_400;
pub const METER_MAX_AHEAD_SECS: i64 = 300;
/// The `user-agent` of webhook deliveries.
pub const WEBHOOK_USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";
/// The `content-type` of webhook deliveries.
pub const WEBHOOK_CONTENT_TYPE: &str = "application/json; charset=utf-8";

const SUPPORT: &str = "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.";

// ------------------------------------------------------------------ routes

/// Stripe's API, paths relative to the mount (`/v1/...`): one dispatcher,
/// so that anything unknown gets Stripe's "Unrecognized request URL".
pub fn routes() -> Router<AppState> {
    Router::new().fallback(dispatch)
}

/// The `/__fakes/stripe/...` control endpoints.
pub fn control_routes() -> Router<AppState> {
    Router::new()
        .route("/__fakes/stripe/meter_events", get(meter_events_handler))
        .route("/__fakes/stripe/events", get(events_handler))
        .route("/__fakes/stripe/events/send", post(send_event_handler))
        .route("/__fakes/stripe/checkout/{id}", get(checkout_handler))
        .route("/__fakes/stripe/checkout/{id}/complete", post(complete_handler))
        .route("/__fakes/stripe/subscriptions/{id}", get(subscription_handler))
}

// ------------------------------------------------------------------ errors

/// A Stripe error answer.
#[derive(Debug, Clone)]
pub struct StripeError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    /// `Stripe-Should-Retry` header.
    pub should_retry: Option<bool>,
    /// Request `seq`, for `request_log_url`.
    pub seq: Option<u64>,
}

impl StripeError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), code: None, param: None, should_retry: None, seq: None }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_owned(),
                message: self.message.clone(),
                code: self.code.map(str::to_owned),
                param: self.param.clone(),
                doc_url: self.code.map(|c| format!("https://stripe.com/docs/error-codes/{}", c.replace('_', "-"))),
                request_log_url: self.seq.map(|s| format!("https://dashboard.stripe.com/test/logs/req_fake_{s}?t={}", now_secs())),
            },
        }
    }
}

impl IntoResponse for StripeError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Stripe\""));
        }
        if let Some(retry) = self.should_retry {
            headers.insert(HeaderName::from_static("stripe-should-retry"), HeaderValue::from_static(if retry { "true" } else { "false" }));
        }
        response
    }
}

/// The error type for a status, for scripted failures without a body.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "card_error",
        429 => "rate_limit_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// `{"error":{"type":…,"message":<reason phrase>}}` (scripted failures).
pub fn error_body(status: StatusCode) -> Value {
    json!({"error": {"type": error_type(status), "message": status.canonical_reason().unwrap_or("Error")}})
}

fn no_such(kind: &str, id: &str, param: &str) -> StripeError {
    StripeError::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("No such {kind}: '{id}'"))
        .code("resource_missing")
        .param(param)
}

fn missing(param: &str) -> StripeError {
    StripeError::invalid(format!("Missing required param: {param}.")).code("parameter_missing").param(param)
}

fn unrecognized(method: &Method, path: &str) -> StripeError {
    StripeError::new(StatusCode::NOT_FOUND, "invalid_request_error", format!("Unrecognized request URL ({method}: {path}). {SUPPORT}"))
}

impl From<ParamError> for StripeError {
    fn from(e: ParamError) -> Self {
        let error = StripeError::invalid(e.message);
        match e.param {
            Some(p) => error.param(p),
            None => error,
        }
    }
}

// -------------------------------------------------------------------- auth

/// The API key of the request: Bearer, or Basic with the key as user name.
fn api_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        return Some(decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user).to_owned());
    }
    None
}

fn authenticate(headers: &HeaderMap) -> Result<(), StripeError> {
    let key = api_key(headers).filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err(StripeError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth \
             (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, \
             or we can help at https://support.stripe.com/.",
        ));
    };
    let valid = ["sk_", "rk_"].iter().any(|p| key.len() > p.len() && key.starts_with(p));
    if valid {
        return Ok(());
    }
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    let head: String = key.chars().take_while(|&c| c != '_').collect();
    Err(StripeError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", format!("Invalid API Key provided: {head}_****{tail}")))
}

// ------------------------------------------------------------------- state

/// A kept idempotent answer.
#[derive(Debug, Clone)]
struct Kept {
    path: String,
    params: Map<String, Value>,
    body: Value,
    seq: Option<u64>,
}

/// A Checkout Session and what Stripe knows of it beyond the object.
#[derive(Debug, Clone)]
struct Session {
    object: Value,
    line_items: Vec<Value>,
    subscription_metadata: Map<String, Value>,
    customer_creation_always: bool,
}

#[derive(Debug, Default)]
struct Inner {
    customers: HashMap<String, Value>,
    sessions: HashMap<String, Session>,
    subscriptions: HashMap<String, Value>,
    meter_events: Vec<Value>,
    meter_identifiers: HashSet<String>,
    idempotency: HashMap<String, Kept>,
    events: Vec<Value>,
}

/// Stripe objects of one fakes server.
#[derive(Debug)]
pub struct StripeState {
    /// Per-process part of every id, so ids never meet across restarts.
    tag: String,
    seq: AtomicU64,
    inner: Mutex<Inner>,
}

impl Default for StripeState {
    fn default() -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut n = random_u64();
        let tag = (0..6)
            .map(|_| {
                let c = ALPHABET[usize::try_from(n % 36).unwrap_or(0)];
                n /= 36;
                char::from(c)
            })
            .collect();
        Self { tag, seq: AtomicU64::new(0), inner: Mutex::new(Inner::default()) }
    }
}

impl StripeState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `prefix` + per-process tag + a number that never repeats.
    fn id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{prefix}{}{n:04}", self.tag)
    }

    /// Forgets every object, event and idempotent answer (ids keep counting).
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    /// Accepted meter events, oldest first.
    pub fn meter_events(&self) -> Vec<Value> {
        self.lock().meter_events.clone()
    }

    /// Every event built, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    pub fn subscription(&self, id: &str) -> Option<Value> {
        self.lock().subscriptions.get(id).cloned()
    }

    pub fn checkout_session(&self, id: &str) -> Option<Value> {
        self.lock().sessions.get(id).map(|s| s.object.clone())
    }
}

// ---------------------------------------------------------------- dispatch

enum Route {
    CreateCustomer,
    GetCustomer(String),
    CreateSession,
    GetSession(String),
    SessionLineItems(String),
    ExpireSession(String),
    CreatePortalSession,
    GetSubscription(String),
    CreateMeterEvent,
    GetEvent(String),
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.strip_prefix("/v1/")?.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let id = |s: &str| s.to_owned();
    Some(match (method.as_str(), segments.as_slice()) {
        ("POST", ["customers"]) => Route::CreateCustomer,
        ("GET", ["customers", c]) => Route::GetCustomer(id(c)),
        ("POST", ["checkout", "sessions"]) => Route::CreateSession,
        ("GET", ["checkout", "sessions", s]) => Route::GetSession(id(s)),
        ("GET", ["checkout", "sessions", s, "line_items"]) => Route::SessionLineItems(id(s)),
        ("POST", ["checkout", "sessions", s, "expire"]) => Route::ExpireSession(id(s)),
        ("POST", ["billing_portal", "sessions"]) => Route::CreatePortalSession,
        ("GET", ["subscriptions", s]) => Route::GetSubscription(id(s)),
        ("POST", ["billing", "meter_events"]) => Route::CreateMeterEvent,
        ("GET", ["events", e]) => Route::GetEvent(id(e)),
        _ => return None,
    })
}

async fn dispatch(
    State(state): State<AppState>,
    info: Option<Extension<RequestInfo>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seq = info.map(|Extension(i)| i.seq);
    let mut response = match handle(&state.stripe, seq, &method, &uri, &headers, &body) {
        Ok(response) => response,
        Err(mut e) => {
            e.seq = seq;
            e.into_response()
        }
    };
    let version = headers.get("stripe-version").cloned().unwrap_or(HeaderValue::from_static(API_VERSION));
    response.headers_mut().insert(HeaderName::from_static("stripe-version"), version);
    response
}

fn handle(
    stripe: &StripeState,
    seq: Option<u64>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, StripeError> {
    authenticate(headers)?;
    let path = uri.path();
    let route = route(method, path).ok_or_else(|| unrecognized(method, path))?;
    let params = if method == Method::GET { parse_form(uri.query().unwrap_or(""))? } else { parse_form(&String::from_utf8_lossy(body))? };
    let key =
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned).filter(|k| method == Method::POST && !k.is_empty());
    let mut inner = stripe.lock();
    if let Some(key) = &key {
        if let Some(kept) = inner.idempotency.get(key) {
            if kept.path != path {
                return Err(StripeError::new(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    format!(
                        "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{}' vs '{path}'). \
                         Try using a key other than '{key}' if you meant to execute a different request.",
                        kept.path
                    ),
                ));
            }
            if kept.params != params {
                return Err(StripeError::new(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                         Try using a key other than '{key}' if you meant to execute a different request."
                    ),
                ));
            }
            let mut response = Json(kept.body.clone()).into_response();
            let h = response.headers_mut();
            h.insert(HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true"));
            if let Ok(v) = HeaderValue::from_str(key) {
                h.insert(HeaderName::from_static("idempotency-key"), v);
            }
            if let Some(Ok(v)) = kept.seq.map(|s| HeaderValue::from_str(&format!("req_fake_{s}"))) {
                h.insert(HeaderName::from_static("original-request"), v);
            }
            return Ok(response);
        }
    }
    let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    let answer = execute(stripe, &mut inner, route, &params, now)?;
    let mut response = Json(answer.clone()).into_response();
    if let Some(key) = key {
        if let Ok(v) = HeaderValue::from_str(&key) {
            response.headers_mut().insert(HeaderName::from_static("idempotency-key"), v);
        }
        inner.idempotency.insert(key, Kept { path: path.to_owned(), params, body: answer, seq });
    }
    Ok(response)
}

fn execute(stripe: &StripeState, inner: &mut Inner, route: Route, params: &Map<String, Value>, now: i64) -> Result<Value, StripeError> {
    match route {
        Route::CreateCustomer => create_customer(stripe, inner, params, now),
        Route::GetCustomer(id) => inner.customers.get(&id).cloned().ok_or_else(|| no_such("customer", &id, "id")),
        Route::CreateSession => create_session(stripe, inner, params, now),
        Route::GetSession(id) => {
            let session = inner.sessions.get(&id).ok_or_else(|| no_such("checkout.session", &id, "session"))?;
            expand_session(inner, session, params)
        }
        Route::SessionLineItems(id) => {
            let session = inner.sessions.get(&id).ok_or_else(|| no_such("checkout.session", &id, "session"))?;
            Ok(line_item_list(&id, &session.line_items))
        }
        Route::ExpireSession(id) => expire_session(inner, &id, params),
        Route::CreatePortalSession => create_portal_session(stripe, inner, params, now),
        Route::GetSubscription(id) => inner.subscriptions.get(&id).cloned().ok_or_else(|| no_such("subscription", &id, "id")),
        Route::CreateMeterEvent => create_meter_event(stripe, inner, params, now),
        Route::GetEvent(id) => inner.events.iter().find(|e| e["id"] == id.as_str()).cloned().ok_or_else(|| no_such("event", &id, "id")),
    }
}

// ------------------------------------------------------------ param access

fn refuse_unknown(params: &Map<String, Value>, known: &[&str]) -> Result<(), StripeError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(StripeError::invalid(format!("Received unknown parameter: {k}")).code("parameter_unknown").param(k.clone())),
        None => Ok(()),
    }
}

/// A string parameter; `""` counts as absent.
fn string(params: &Map<String, Value>, key: &str, param: &str) -> Result<Option<String>, StripeError> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => {
            Err(StripeError::invalid(format!("Invalid string: {param} must be a string")).code("parameter_invalid_string").param(param))
        }
    }
}

fn integer(params: &Map<String, Value>, key: &str, param: &str) -> Result<Option<i64>, StripeError> {
    match string(params, key, param)? {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| StripeError::invalid(format!("Invalid integer: {s}")).code("parameter_invalid_integer").param(param)),
    }
}

fn hash<'a>(params: &'a Map<String, Value>, key: &str, param: &str) -> Result<Option<&'a Map<String, Value>>, StripeError> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(StripeError::invalid("Invalid hash").param(param)),
    }
}

/// `metadata`: at most 50 keys of at most 40 characters, values of at most
/// 500; `""` values unset.
fn metadata_param(params: &Map<String, Value>, key: &str, param: &str) -> Result<Map<String, Value>, StripeError> {
    let Some(map) = hash(params, key, param)? else {
        return Ok(Map::new());
    };
    if map.len() > 50 {
        return Err(StripeError::invalid("Metadata can have up to 50 keys.").param(param));
    }
    let mut out = Map::new();
    for (k, v) in map {
        let Value::String(v) = v else {
            return Err(StripeError::invalid("Invalid hash").param(format!("{param}[{k}]")));
        };
        if k.chars().count() > 40 {
            return Err(StripeError::invalid(format!(
                "Metadata keys can have up to 40 characters, but you passed in a key with {} characters.",
                k.chars().count()
            ))
            .param(format!("{param}[{k}]")));
        }
        if v.chars().count() > 500 {
            return Err(StripeError::invalid(format!(
                "Metadata values can have up to 500 characters, but you passed in a value that is {} characters.",
                v.chars().count()
            ))
            .param(format!("{param}[{k}]")));
        }
        if !v.is_empty() {
            out.insert(k.clone(), Value::String(v.clone()));
        }
    }
    Ok(out)
}

fn url(params: &Map<String, Value>, key: &str) -> Result<Option<String>, StripeError> {
    let value = string(params, key, key)?;
    if let Some(u) = &value {
        let ok = reqwest::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host_str().is_some());
        if !ok {
            return Err(StripeError::invalid("Not a valid URL").code("url_invalid").param(key));
        }
    }
    Ok(value)
}

fn expand_list(params: &Map<String, Value>) -> Result<Vec<String>, StripeError> {
    match params.get("expand") {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(_) => Err(StripeError::invalid("Invalid array").param("expand")),
    }
}

/// The customer of a request: known, or adopted when it looks like one.
fn customer_ref(inner: &mut Inner, id: &str, param: &str, now: i64) -> Result<(), StripeError> {
    if inner.customers.contains_key(id) {
        return Ok(());
    }
    if !id.starts_with("cus_") || id.len() <= 4 {
        return Err(no_such("customer", id, param));
    }
    inner.customers.insert(id.to_owned(), customer_object(id, None, None, None, Map::new(), now));
    Ok(())
}

// --------------------------------------------------------------- customers

fn customer_object(
    id: &str,
    email: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    metadata: Map<String, Value>,
    now: i64,
) -> Value {
    json!({
        "id": id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": now,
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": email,
        "invoice_prefix": id.trim_start_matches("cus_").chars().rev().take(8).collect::<String>().to_ascii_uppercase(),
        "invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null},
        "livemode": false,
        "metadata": metadata,
        "name": name,
        "next_invoice_sequence": 1,
        "phone": phone,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null,
    })
}

const CUSTOMER_PARAMS: [&str; 23] = [
    "address",
    "balance",
    "business_name",
    "cash_balance",
    "description",
    "email",
    "expand",
    "individual_name",
    "invoice_prefix",
    "invoice_settings",
    "metadata",
    "name",
    "next_invoice_sequence",
    "payment_method",
    "phone",
    "preferred_locales",
    "shipping",
    "source",
    "tax",
    "tax_exempt",
    "tax_id_data",
    "test_clock",
    "validate",
];

fn create_customer(stripe: &StripeState, inner: &mut Inner, params: &Map<String, Value>, now: i64) -> Result<Value, StripeError> {
    refuse_unknown(params, &CUSTOMER_PARAMS)?;
    let email = string(params, "email", "email")?;
    if let Some(e) = &email {
        if e.chars().count() > 512 {
            return Err(StripeError::invalid("Invalid email address").code("email_invalid").param("email"));
        }
    }
    let name = string(params, "name", "name")?;
    let phone = string(params, "phone", "phone")?;
    let metadata = metadata_param(params, "metadata", "metadata")?;
    let mut customer = customer_object(&stripe.id("cus_fake_"), email, name, phone, metadata, now);
    if let Some(d) = string(params, "description", "description")? {
        customer["description"] = json!(d);
    }
    let id = customer["id"].as_str().unwrap_or_default().to_owned();
    inner.customers.insert(id, customer.clone());
    Ok(customer)
}

// ------------------------------------------------------- checkout sessions

const SESSION_PARAMS: [&str; 50] = [
    "adaptive_pricing",
    "after_expiration",
    "allow_promotion_codes",
    "automatic_tax",
    "billing_address_collection",
    "branding_settings",
    "cancel_url",
    "client_reference_id",
    "consent_collection",
    "currency",
    "custom_fields",
    "custom_text",
    "customer",
    "customer_account",
    "customer_creation",
    "customer_email",
    "customer_update",
    "discounts",
    "excluded_payment_method_types",
    "expand",
    "expires_at",
    "invoice_creation",
    "line_items",
    "locale",
    "metadata",
    "mode",
    "name_collection",
    "optional_items",
    "origin_context",
    "payment_intent_data",
    "payment_method_collection",
    "payment_method_configuration",
    "payment_method_data",
    "payment_method_options",
    "payment_method_types",
    "permissions",
    "phone_number_collection",
    "redirect_on_completion",
    "return_url",
    "saved_payment_method_options",
    "setup_intent_data",
    "shipping_address_collection",
    "shipping_options",
    "submit_type",
    "subscription_data",
    "success_url",
    "tax_id_collection",
    "ui_mode",
    "wallet_options",
    "managed_payments",
];

const LINE_ITEM_PARAMS: [&str; 6] = ["adjustable_quantity", "dynamic_tax_rates", "metadata", "price", "price_data", "quantity"];

/// A line item (Stripe's `item` object) from `line_items[i]`.
fn line_item(stripe: &StripeState, mode: &str, i: usize, item: &Value, now: i64) -> Result<Value, StripeError> {
    let at = |name: &str| format!("line_items[{i}][{name}]");
    let Value::Object(item) = item else {
        return Err(StripeError::invalid("Invalid hash").param(format!("line_items[{i}]")));
    };
    if let Some(k) = item.keys().find(|k| !LINE_ITEM_PARAMS.contains(&k.as_str())) {
        return Err(StripeError::invalid(format!("Received unknown parameter: line_items[{i}][{k}]"))
            .code("parameter_unknown")
            .param(at(k)));
    }
    let quantity = integer(item, "quantity", &at("quantity"))?.ok_or_else(|| missing(&at("quantity")))?;
    if quantity < 1 {
        return Err(
            StripeError::invalid(format!("This value must be greater than or equal to 1 ({}).", at("quantity"))).param(at("quantity"))
        );
    }
    let price_id = string(item, "price", &at("price"))?;
    let price_data = hash(item, "price_data", &at("price_data"))?;
    let price = match (price_id, price_data) {
        (Some(_), Some(_)) => {
            return Err(StripeError::invalid(format!(
                "You may only specify one of these parameters: {}, {}.",
                at("price"),
                at("price_data")
            ))
            .param(at("price_data")))
        }
        (None, None) => {
            return Err(
                StripeError::invalid(format!("You must specify either `price` or `price_data` in `line_items[{i}]`.")).param(at("price"))
            )
        }
        (Some(id), None) => json!({
            "id": id, "object": "price", "active": true, "billing_scheme": "per_unit", "created": now, "currency": "usd",
            "livemode": false, "lookup_key": null, "metadata": {}, "nickname": null, "product": null, "recurring": null,
            "tax_behavior": "unspecified", "type": if mode == "subscription" { "recurring" } else { "one_time" },
            "unit_amount": null, "unit_amount_decimal": null,
        }),
        (None, Some(data)) => {
            let pd = |name: &str| format!("line_items[{i}][price_data][{name}]");
            let currency = string(data, "currency", &pd("currency"))?.ok_or_else(|| missing(&pd("currency")))?.to_ascii_lowercase();
            let unit_amount = integer(data, "unit_amount", &pd("unit_amount"))?;
            let decimal = string(data, "unit_amount_decimal", &pd("unit_amount_decimal"))?;
            let unit_amount = match (unit_amount, decimal) {
                (Some(a), _) => a,
                (None, Some(d)) => d
                    .parse::<f64>()
                    .map(|f| f.round() as i64)
                    .map_err(|_| StripeError::invalid(format!("Invalid decimal: {d}")).param(pd("unit_amount_decimal")))?,
                (None, None) => return Err(missing(&pd("unit_amount"))),
            };
            if unit_amount < 0 {
                return Err(StripeError::invalid(format!("This value must be greater than or equal to 0 ({}).", pd("unit_amount")))
                    .param(pd("unit_amount")));
            }
            let product = match (string(data, "product", &pd("product"))?, hash(data, "product_data", &pd("product_data"))?) {
                (Some(p), _) => p,
                (None, Some(product_data)) => {
                    let name = string(product_data, "name", &pd("product_data][name"))?;
                    if name.is_none() {
                        return Err(missing(&format!("line_items[{i}][price_data][product_data][name]")));
                    }
                    stripe.id("prod_fake_")
                }
                (None, None) => return Err(missing(&pd("product_data"))),
            };
            let recurring = match hash(data, "recurring", &pd("recurring"))? {
                None => Value::Null,
                Some(r) => {
                    let param = format!("line_items[{i}][price_data][recurring][interval]");
                    let interval = string(r, "interval", &param)?.ok_or_else(|| missing(&param))?;
                    if !["day", "week", "month", "year"].contains(&interval.as_str()) {
                        return Err(StripeError::invalid(format!("Invalid {param}: must be one of day, week, month, or year")).param(param));
                    }
                    let count =
                        integer(r, "interval_count", &format!("line_items[{i}][price_data][recurring][interval_count]"))?.unwrap_or(1);
                    json!({
                        "interval": interval, "interval_count": count, "meter": null, "trial_period_days": null, "usage_type": "licensed",
                    })
                }
            };
            let name = hash(data, "product_data", "")?.and_then(|p| p.get("name")).and_then(Value::as_str).map(str::to_owned);
            json!({
                "id": stripe.id("price_fake_"), "object": "price", "active": false, "billing_scheme": "per_unit", "created": now,
                "currency": currency, "livemode": false, "lookup_key": null, "metadata": {}, "nickname": name, "product": product,
                "recurring": recurring, "tax_behavior": "unspecified",
                "type": if recurring.is_null() { "one_time" } else { "recurring" },
                "unit_amount": unit_amount, "unit_amount_decimal": unit_amount.to_string(),
            })
        }
    };
    let amount = price["unit_amount"].as_i64().map(|a| a.saturating_mul(quantity));
    let description = price["nickname"].as_str().map(str::to_owned).or_else(|| price["id"].as_str().map(str::to_owned));
    Ok(json!({
        "id": stripe.id("li_fake_"),
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": amount.unwrap_or(0),
        "amount_tax": 0,
        "amount_total": amount.unwrap_or(0),
        "currency": price["currency"],
        "description": description,
        "price": price,
        "quantity": quantity,
    }))
}

fn create_session(stripe: &StripeState, inner: &mut Inner, params: &Map<String, Value>, now: i64) -> Result<Value, StripeError> {
    refuse_unknown(params, &SESSION_PARAMS)?;
    let mode = string(params, "mode", "mode")?.ok_or_else(|| missing("mode"))?;
    if !["payment", "subscription", "setup"].contains(&mode.as_str()) {
        return Err(
            StripeError::invalid(format!("Invalid mode: must be one of payment, setup, or subscription (got {mode})")).param("mode")
        );
    }
    let ui_mode = string(params, "ui_mode", "ui_mode")?.unwrap_or_else(|| "hosted".to_owned());
    let items = match params.get("line_items") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(_) => return Err(StripeError::invalid("Invalid array").param("line_items")),
    };
    if items.is_empty() && mode != "setup" {
        return Err(StripeError::invalid(format!("`line_items` is required in `{mode}` mode.")).param("line_items"));
    }
    let line_items = items.iter().enumerate().map(|(i, item)| line_item(stripe, &mode, i, item, now)).collect::<Result<Vec<_>, _>>()?;
    let recurring = line_items.iter().any(|l| l["price"]["type"] == "recurring");
    if mode == "subscription" && !recurring {
        return Err(StripeError::invalid("You must provide at least one recurring price in `subscription` mode when using prices.")
            .param("line_items"));
    }
    if mode == "payment" && recurring {
        return Err(StripeError::invalid(
            "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.",
        )
        .param("line_items"));
    }
    let customer = string(params, "customer", "customer")?;
    let customer_email = string(params, "customer_email", "customer_email")?;
    if customer.is_some() && customer_email.is_some() {
        return Err(StripeError::invalid("You may only specify one of these parameters: customer, customer_email.").param("customer_email"));
    }
    if let Some(c) = &customer {
        customer_ref(inner, c, "customer", now)?;
    }
    let success_url = url(params, "success_url")?;
    let cancel_url = url(params, "cancel_url")?;
    let return_url = url(params, "return_url")?;
    if ui_mode == "hosted" && return_url.is_some() {
        return Err(StripeError::invalid("You can only specify `return_url` when `ui_mode` is `embedded` or `custom`.").param("return_url"));
    }
    let client_reference_id = string(params, "client_reference_id", "client_reference_id")?;
    if client_reference_id.as_ref().is_some_and(|c| c.chars().count() > 200) {
        return Err(StripeError::invalid("client_reference_id can be at most 200 characters.").param("client_reference_id"));
    }
    let metadata = metadata_param(params, "metadata", "metadata")?;
    let subscription_metadata = match hash(params, "subscription_data", "subscription_data")? {
        Some(data) => metadata_param(data, "metadata", "subscription_data[metadata]")?,
        None => Map::new(),
    };
    if mode != "subscription" && params.contains_key("subscription_data") {
        return Err(StripeError::invalid("You can only specify `subscription_data` in `subscription` mode.").param("subscription_data"));
    }
    let customer_creation = string(params, "customer_creation", "customer_creation")?;
    let expires_at = integer(params, "expires_at", "expires_at")?.unwrap_or(now + SESSION_TTL_SECS);
    let currency = line_items.first().and_then(|l| l["currency"].as_str()).map(str::to_owned).or(string(params, "currency", "currency")?);
    let amount: Option<i64> = if mode == "setup" { None } else { Some(line_items.iter().filter_map(|l| l["amount_total"].as_i64()).sum()) };
    let id = stripe.id("cs_test_");
    let creation = match (&customer, mode.as_str()) {
        (None, "payment" | "setup") => json!(customer_creation.clone().unwrap_or_else(|| "if_required".to_owned())),
        _ => Value::Null,
    };
    let details = customer_email
        .as_ref()
        .map(|e| json!({"address": null, "email": e, "name": null, "phone": null, "tax_exempt": "none", "tax_ids": null}));
    let url = (ui_mode == "hosted").then(|| format!("https://checkout.stripe.com/c/pay/{id}"));
    let mut object = json!({
        "id": id,
        "object": "checkout.session",
        "adaptive_pricing": null,
        "after_expiration": null,
        "allow_promotion_codes": string(params, "allow_promotion_codes", "allow_promotion_codes")?.map(|v| v == "true"),
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
        "billing_address_collection": string(params, "billing_address_collection", "billing_address_collection")?,
        "cancel_url": cancel_url,
        "client_reference_id": client_reference_id,
        "client_secret": null,
        "collected_information": null,
        "consent": null,
        "consent_collection": null,
        "created": now,
        "currency": if mode == "setup" { Value::Null } else { json!(currency.unwrap_or_else(|| "usd".to_owned())) },
        "currency_conversion": null,
        "custom_fields": [],
        "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
        "customer": customer,
        "customer_creation": creation,
        "customer_details": details,
        "customer_email": customer_email,
    });
    let rest = json!({
        "discounts": [],
        "expires_at": expires_at,
        "invoice": null,
        "invoice_creation": null,
        "livemode": false,
        "locale": string(params, "locale", "locale")?,
        "metadata": metadata,
        "mode": mode,
        "origin_context": null,
        "payment_intent": null,
        "payment_link": null,
        "payment_method_collection": if mode == "subscription" { json!("always") } else { Value::Null },
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": if mode == "setup" { "no_payment_required" } else { "unpaid" },
        "permissions": null,
        "phone_number_collection": {"enabled": false},
        "recovered_from": null,
        "saved_payment_method_options": null,
        "setup_intent": null,
        "shipping_address_collection": null,
        "shipping_cost": null,
        "shipping_options": [],
        "status": "open",
        "submit_type": string(params, "submit_type", "submit_type")?,
        "subscription": null,
        "success_url": success_url,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": ui_mode,
        "url": url,
        "wallet_options": null,
    });
    if let (Value::Object(object), Value::Object(rest)) = (&mut object, rest) {
        object.extend(rest);
    }
    let session = Session {
        object: object.clone(),
        line_items,
        subscription_metadata,
        customer_creation_always: customer_creation.as_deref() == Some("always"),
    };
    inner.sessions.insert(id, session.clone());
    expand_session(inner, &session, params)
}

fn line_item_list(session_id: &str, items: &[Value]) -> Value {
    json!({"object": "list", "data": items, "has_more": false, "url": format!("/v1/checkout/sessions/{session_id}/line_items")})
}

fn expand_session(inner: &Inner, session: &Session, params: &Map<String, Value>) -> Result<Value, StripeError> {
    let mut object = session.object.clone();
    let id = object["id"].as_str().unwrap_or_default().to_owned();
    for path in expand_list(params)? {
        match path.as_str() {
            "line_items" => object["line_items"] = line_item_list(&id, &session.line_items),
            "customer" => {
                if let Some(c) = object["customer"].as_str().and_then(|c| inner.customers.get(c)) {
                    object["customer"] = c.clone();
                }
            }
            "subscription" => {
                if let Some(s) = object["subscription"].as_str().and_then(|s| inner.subscriptions.get(s)) {
                    object["subscription"] = s.clone();
                }
            }
            other => return Err(StripeError::invalid(format!("This property cannot be expanded ({other}).")).param("expand")),
        }
    }
    Ok(object)
}

fn expire_session(inner: &mut Inner, id: &str, params: &Map<String, Value>) -> Result<Value, StripeError> {
    refuse_unknown(params, &["expand"])?;
    let session = inner.sessions.get_mut(id).ok_or_else(|| no_such("checkout.session", id, "session"))?;
    let status = session.object["status"].as_str().unwrap_or_default().to_owned();
    if status != "open" {
        return Err(StripeError::invalid(format!(
            "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{status}\"."
        )));
    }
    session.object["status"] = json!("expired");
    session.object["url"] = Value::Null;
    Ok(session.object.clone())
}

// ------------------------------------------------------------ billing portal

fn create_portal_session(stripe: &StripeState, inner: &mut Inner, params: &Map<String, Value>, now: i64) -> Result<Value, StripeError> {
    refuse_unknown(
        params,
        &["configuration", "customer", "customer_account", "expand", "flow_data", "locale", "on_behalf_of", "return_url"],
    )?;
    let customer = string(params, "customer", "customer")?.ok_or_else(|| missing("customer"))?;
    customer_ref(inner, &customer, "customer", now)?;
    let return_url = url(params, "return_url")?;
    let id = stripe.id("bps_");
    let n = id.trim_start_matches("bps_").to_owned();
    Ok(json!({
        "id": id,
        "object": "billing_portal.session",
        "configuration": format!("bpc_{}", stripe.tag),
        "created": now,
        "customer": customer,
        "flow": null,
        "livemode": false,
        "locale": string(params, "locale", "locale")?,
        "on_behalf_of": string(params, "on_behalf_of", "on_behalf_of")?,
        "return_url": return_url,
        "url": format!("https://billing.stripe.com/p/session/test_{n}"),
    }))
}

// ------------------------------------------------------------- meter events

fn create_meter_event(stripe: &StripeState, inner: &mut Inner, params: &Map<String, Value>, now: i64) -> Result<Value, StripeError> {
    refuse_unknown(params, &["event_name", "expand", "identifier", "payload", "timestamp"])?;
    let event_name = string(params, "event_name", "event_name")?.ok_or_else(|| missing("event_name"))?;
    if event_name.chars().count() > 100 {
        return Err(StripeError::invalid("event_name can be at most 100 characters.").param("event_name"));
    }
    let payload = hash(params, "payload", "payload")?.ok_or_else(|| missing("payload"))?;
    if let Some((k, _)) = payload.iter().find(|(_, v)| !v.is_string()) {
        return Err(StripeError::invalid("Invalid hash").param(format!("payload[{k}]")));
    }
    let identifier = string(params, "identifier", "identifier")?.unwrap_or_else(|| stripe.id("mev_fake_"));
    if identifier.chars().count() > 100 {
        return Err(StripeError::invalid("identifier can be at most 100 characters.").param("identifier"));
    }
    let timestamp = integer(params, "timestamp", "timestamp")?.unwrap_or(now);
    if timestamp < now - METER_MAX_AGE_SECS || timestamp > now + METER_MAX_AHEAD_SECS {
        return Err(StripeError::invalid("Timestamp must be within the past 35 calendar days and at most 5 minutes in the future.")
            .code("parameter_invalid_integer")
            .param("timestamp"));
    }
    if inner.meter_identifiers.contains(&identifier) {
        let mut error = StripeError::invalid(format!("An event already exists with identifier {identifier}."));
        error.should_retry = Some(false);
        return Err(error);
    }
    let event = json!({
        "object": "billing.meter_event",
        "created": now,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": false,
        "payload": payload,
        "timestamp": timestamp,
    });
    inner.meter_identifiers.insert(identifier);
    inner.meter_events.push(event.clone());
    Ok(event)
}

// ----------------------------------------------------------- control plane

/// `GET /__fakes/stripe/meter_events`: accepted meter events, in order.
async fn meter_events_handler(State(state): State<AppState>) -> Json<MeterEvents> {
    Json(MeterEvents { events: state.stripe.meter_events() })
}

/// `GET /__fakes/stripe/events`: every event built, in order.
async fn events_handler(State(state): State<AppState>) -> Json<StripeEvents> {
    Json(StripeEvents { events: state.stripe.events() })
}

/// `GET /__fakes/stripe/subscriptions/{id}`.
async fn subscription_handler(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.stripe.subscription(&id) {
        Some(s) => Json(s).into_response(),
        None => control_error(StatusCode::NOT_FOUND, format!("no subscription {id}")),
    }
}

/// `GET /__fakes/stripe/checkout/{id}`: the session as stored.
async fn checkout_handler(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.stripe.checkout_session(&id) {
        Some(s) => Json(s).into_response(),
        None => control_error(StatusCode::NOT_FOUND, format!("no checkout session {id}")),
    }
}

/// Where and how to deliver.
#[derive(Debug, Clone)]
struct DeliveryPlan {
    url: String,
    secret: String,
    deliveries: u32,
    concurrent: bool,
    tamper: bool,
    offset: i64,
    wrong_secret: bool,
}

fn delivery_plan(
    url: Option<String>,
    secret: Option<String>,
    deliveries: Option<u32>,
    concurrent: bool,
    tamper: bool,
    offset: Option<i64>,
    wrong_secret: bool,
) -> Result<Option<DeliveryPlan>, String> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("webhook_url: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("webhook_url must be an http(s) URL".to_owned());
    }
    let secret = secret.filter(|s| !s.is_empty()).ok_or("secret is required with webhook_url")?;
    let deliveries = deliveries.unwrap_or(1);
    if deliveries > MAX_DELIVERIES {
        return Err(format!("deliveries must be at most {MAX_DELIVERIES}"));
    }
    Ok(Some(DeliveryPlan { url, secret, deliveries, concurrent, tamper, offset: offset.unwrap_or(0), wrong_secret }))
}

fn event_object(id: String, kind: &str, object: Value, created: i64, api_version: &str, previous_attributes: Option<Value>) -> Value {
    let mut data = json!({"object": object});
    if let Some(p) = previous_attributes {
        data["previous_attributes"] = p;
    }
    json!({
        "id": id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind,
    })
}

fn http_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().unwrap_or_default())
}

/// The body and `Stripe-Signature` of one event, as the plan asks.
fn signed(event: &Value, plan: &DeliveryPlan) -> (String, String) {
    let body = serde_json::to_string_pretty(event).unwrap_or_default();
    let t = i64::try_from(now_secs()).unwrap_or(i64::MAX).saturating_add(plan.offset);
    let secret = if plan.wrong_secret { format!("{}_not_the_endpoint_secret", plan.secret) } else { plan.secret.clone() };
    let header = signature_header(&secret, t, body.as_bytes());
    let body = if plan.tamper {
        match body.find("\"livemode\": false") {
            Some(i) => format!("{}\"livemode\": true{}", &body[..i], &body[i + "\"livemode\": false".len()..]),
            None => format!("{body} "),
        }
    } else {
        body
    };
    (body, header)
}

async fn post_once(url: &str, event_id: &str, attempt: u32, body: String, signature: &str) -> Delivery {
    let result = http_client()
        .post(url)
        .header("content-type", WEBHOOK_CONTENT_TYPE)
        .header("user-agent", WEBHOOK_USER_AGENT)
        .header("accept", "*/*; q=0.5, application/xml")
        .header("cache-control", "no-cache")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await;
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            Delivery {
                event_id: event_id.to_owned(),
                attempt,
                status: Some(status),
                error: None,
                body: Some(text.chars().take(2_000).collect()),
            }
        }
        Err(e) => Delivery { event_id: event_id.to_owned(), attempt, status: None, error: Some(e.to_string()), body: None },
    }
}

/// Delivers each event `plan.deliveries` times, event after event.
async fn deliver(events: &[Value], plan: &DeliveryPlan) -> Vec<Delivery> {
    let mut out = Vec::new();
    for event in events {
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        let (body, signature) = signed(event, plan);
        if plan.concurrent {
            let sends = (1..=plan.deliveries).map(|attempt| post_once(&plan.url, &id, attempt, body.clone(), &signature));
            out.extend(futures::future::join_all(sends).await);
        } else {
            for attempt in 1..=plan.deliveries {
                out.push(post_once(&plan.url, &id, attempt, body.clone(), &signature).await);
            }
        }
    }
    out
}

fn parse_control<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))
}

/// `POST /__fakes/stripe/checkout/{id}/complete` ([`CompleteCheckout`]).
async fn complete_handler(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let req: CompleteCheckout = match parse_control(&body) {
        Ok(r) => r,
        Err(message) => return control_error(StatusCode::BAD_REQUEST, message),
    };
    let plan = match delivery_plan(
        req.webhook_url.clone(),
        req.secret.clone(),
        req.deliveries,
        req.concurrent,
        req.tamper,
        req.timestamp_offset_secs,
        req.wrong_secret,
    ) {
        Ok(p) => p,
        Err(message) => return control_error(StatusCode::BAD_REQUEST, message),
    };
    let (events, session, subscription) = match complete_session(&state.stripe, &id, &req) {
        Ok(done) => done,
        Err((status, message)) => return control_error(status, message),
    };
    let deliveries = match &plan {
        Some(plan) => deliver(&events, plan).await,
        None => Vec::new(),
    };
    Json(DeliveryReport {
        events: events.iter().filter_map(|e| e["id"].as_str().map(str::to_owned)).collect(),
        deliveries,
        event_objects: events,
        session: Some(session),
        subscription,
    })
    .into_response()
}

type Completed = (Vec<Value>, Value, Option<Value>);

/// Marks the session complete (and paid), makes its customer and
/// subscription as Stripe would, and builds the events.
fn complete_session(stripe: &StripeState, id: &str, req: &CompleteCheckout) -> Result<Completed, (StatusCode, String)> {
    let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    let mut inner = stripe.lock();
    let Some(session) = inner.sessions.get(id).cloned() else {
        return Err((StatusCode::NOT_FOUND, format!("no checkout session {id}")));
    };
    let status = session.object["status"].as_str().unwrap_or_default().to_owned();
    if status != "open" {
        return Err((StatusCode::CONFLICT, format!("checkout session {id} is {status}, not open")));
    }
    let mut object = session.object.clone();
    let mode = object["mode"].as_str().unwrap_or_default().to_owned();
    // The customer: the session's, else a new one when Stripe makes one.
    let mut customer_id = object["customer"].as_str().map(str::to_owned);
    let email = req.email.clone().or_else(|| object["customer_email"].as_str().map(str::to_owned));
    if customer_id.is_none() && (mode == "subscription" || session.customer_creation_always) {
        let cid = stripe.id("cus_fake_");
        inner.customers.insert(cid.clone(), customer_object(&cid, email.clone(), req.name.clone(), None, Map::new(), now));
        customer_id = Some(cid);
    }
    let known = customer_id.as_deref().and_then(|c| inner.customers.get(c));
    let details_email = email.or_else(|| known.and_then(|c| c["email"].as_str().map(str::to_owned)));
    let details_name = req.name.clone().or_else(|| known.and_then(|c| c["name"].as_str().map(str::to_owned)));
    object["customer"] = json!(customer_id);
    object["customer_details"] =
        json!({"address": null, "email": details_email, "name": details_name, "phone": null, "tax_exempt": "none", "tax_ids": []});
    object["status"] = json!("complete");
    object["payment_status"] = json!(if mode == "setup" { "no_payment_required" } else { "paid" });
    object["url"] = Value::Null;
    let mut subscription = None;
    match mode.as_str() {
        "payment" => object["payment_intent"] = json!(stripe.id("pi_fake_")),
        "setup" => object["setup_intent"] = json!(stripe.id("seti_fake_")),
        _ => {
            let sub = subscription_object(stripe, &session, customer_id.as_deref().unwrap_or_default(), req.lookup_key.clone(), now);
            let sub_id = sub["id"].as_str().unwrap_or_default().to_owned();
            object["subscription"] = json!(sub_id);
            object["invoice"] = sub["latest_invoice"].clone();
            inner.subscriptions.insert(sub_id, sub.clone());
            subscription = Some(sub);
        }
    }
    if let Some(stored) = inner.sessions.get_mut(id) {
        stored.object = object.clone();
    }
    let mut events = vec![event_object(stripe.id("evt_"), "checkout.session.completed", object.clone(), now, API_VERSION, None)];
    if let Some(sub) = &subscription {
        events.push(event_object(stripe.id("evt_"), "customer.subscription.created", sub.clone(), now, API_VERSION, None));
    }
    inner.events.extend(events.iter().cloned());
    Ok((events, object, subscription))
}

/// The subscription of a completed subscription-mode session: active, one
/// item per recurring line item, periods now → now + [`PERIOD_SECS`] (on
/// the subscription, as before API 2025-03-31, and on each item, as since).
fn subscription_object(stripe: &StripeState, session: &Session, customer: &str, lookup_key: Option<String>, now: i64) -> Value {
    let id = stripe.id("sub_fake_");
    let end = now + PERIOD_SECS;
    let metadata_plan =
        session.object["metadata"]["plan"].as_str().or_else(|| session.subscription_metadata.get("plan").and_then(Value::as_str));
    let items: Vec<Value> = session
        .line_items
        .iter()
        .filter(|l| l["price"]["type"] == "recurring")
        .enumerate()
        .map(|(i, line)| {
            let mut price = line["price"].clone();
            if i == 0 {
                let key = lookup_key.clone().or_else(|| metadata_plan.map(str::to_owned)).or_else(|| {
                    // A price given by id: its id stands for its lookup key.
                    price["id"].as_str().filter(|p| !p.starts_with("price_fake_")).map(str::to_owned)
                });
                price["lookup_key"] = json!(key);
            }
            json!({
                "id": stripe.id("si_fake_"),
                "object": "subscription_item",
                "billing_thresholds": null,
                "created": now,
                "current_period_end": end,
                "current_period_start": now,
                "discounts": [],
                "metadata": {},
                "price": price,
                "quantity": line["quantity"],
                "subscription": id,
                "tax_rates": [],
            })
        })
        .collect();
    let currency = session.object["currency"].clone();
    let mut object = json!({
        "id": id,
        "object": "subscription",
        "application": null,
        "application_fee_percent": null,
        "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
        "billing_cycle_anchor": now,
        "billing_cycle_anchor_config": null,
        "cancel_at": null,
        "cancel_at_period_end": false,
        "canceled_at": null,
        "cancellation_details": {"comment": null, "feedback": null, "reason": null},
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency,
        "current_period_end": end,
        "current_period_start": now,
        "customer": customer,
        "days_until_due": null,
        "default_payment_method": stripe.id("pm_fake_"),
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discounts": [],
    });
    let rest = json!({
        "ended_at": null,
        "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
        "items": {
            "object": "list", "data": items, "has_more": false, "total_count": items.len(),
            "url": format!("/v1/subscription_items?subscription={id}"),
        },
        "latest_invoice": stripe.id("in_fake_"),
        "livemode": false,
        "metadata": session.subscription_metadata,
        "next_pending_invoice_item_invoice": null,
        "on_behalf_of": null,
        "pause_collection": null,
        "pending_invoice_item_interval": null,
        "pending_setup_intent": null,
        "pending_update": null,
        "schedule": null,
        "start_date": now,
        "status": "active",
        "test_clock": null,
        "transfer_data": null,
        "trial_end": null,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": null,
    });
    if let (Value::Object(object), Value::Object(rest)) = (&mut object, rest) {
        object.extend(rest);
    }
    object
}

/// `POST /__fakes/stripe/events/send` ([`SendEvent`]). A `subscription`
/// object is also merged into the stored subscription of its id (created
/// if new), so `GET /v1/subscriptions/{id}` agrees with the events sent.
async fn send_event_handler(State(state): State<AppState>, body: Bytes) -> Response {
    let req: SendEvent = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return control_error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    if req.kind.is_empty() {
        return control_error(StatusCode::BAD_REQUEST, "type is required");
    }
    if !req.object.is_object() {
        return control_error(StatusCode::BAD_REQUEST, "object must be a JSON object");
    }
    let plan = match delivery_plan(
        Some(req.webhook_url.clone()),
        Some(req.secret.clone()),
        req.deliveries,
        req.concurrent,
        req.tamper,
        req.timestamp_offset_secs,
        req.wrong_secret,
    ) {
        Ok(Some(p)) => p,
        Ok(None) => return control_error(StatusCode::BAD_REQUEST, "webhook_url is required"),
        Err(message) => return control_error(StatusCode::BAD_REQUEST, message),
    };
    let stripe = &state.stripe;
    let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    let id = req.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| stripe.id("evt_"));
    let api_version = req.api_version.clone().unwrap_or_else(|| API_VERSION.to_owned());
    let event =
        event_object(id.clone(), &req.kind, req.object.clone(), req.created.unwrap_or(now), &api_version, req.previous_attributes.clone());
    {
        let mut inner = stripe.lock();
        if let (Some("subscription"), Some(sub_id)) = (req.object["object"].as_str(), req.object["id"].as_str()) {
            let stored = inner.subscriptions.entry(sub_id.to_owned()).or_insert_with(|| json!({}));
            if let (Value::Object(stored), Value::Object(sent)) = (stored, &req.object) {
                for (k, v) in sent {
                    stored.insert(k.clone(), v.clone());
                }
            }
        }
        inner.events.push(event.clone());
    }
    let events = vec![event];
    let deliveries = deliver(&events, &plan).await;
    Json(DeliveryReport { events: vec![id], deliveries, event_objects: events, session: None, subscription: None }).into_response()
}

// ----------------------------------------------------------------- helpers

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u64(now_ms());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_brackets_parse_to_json() {
        let form = "mode=subscription&line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=500\
                    &line_items[0][price_data][currency]=usd&line_items[0][quantity]=1\
                    &line_items[1][price]=price_x&line_items[1][quantity]=2\
                    &metadata[account_id]=acct_1&metadata[0]=zero&subscription_data[metadata][plan]=pro\
                    &expand[]=line_items&expand[]=customer&name=Jane+Doe%21&email=a%2Bb%40c.io";
        let parsed = parse_form(form).expect("parses");
        assert_eq!(
            Value::Object(parsed),
            json!({
                "mode": "subscription",
                "line_items": [
                    {"price_data": {"unit_amount": "500", "currency": "usd"}, "quantity": "1"},
                    {"price": "price_x", "quantity": "2"},
                ],
                "metadata": {"account_id": "acct_1", "0": "zero"},
                "subscription_data": {"metadata": {"plan": "pro"}},
                "expand": ["line_items", "customer"],
                "name": "Jane Doe!",
                "email": "a+b@c.io",
            })
        );
        // Indexes out of order are put in order.
        let parsed = parse_form("items[1][a]=second&items[0][a]=first&items[10][a]=tenth").expect("parses");
        assert_eq!(parsed["items"], json!([{"a": "first"}, {"a": "second"}, {"a": "tenth"}]));
        // A repeated key keeps the last value; empty input is empty.
        assert_eq!(parse_form("a=1&a=2").expect("parses")["a"], "2");
        assert!(parse_form("").expect("parses").is_empty());
    }

    #[test]
    fn bad_brackets_are_refused() {
        let err = parse_form("metadata=x&metadata[a]=b").expect_err("scalar then hash");
        assert_eq!((err.message.as_str(), err.param.as_deref()), ("Invalid hash", Some("metadata")));
        assert!(parse_form("metadata[a]=b&metadata=x").is_err());
        assert!(parse_form("a[b=1").is_err());
        assert!(parse_form("[a]=1").is_err());
        assert!(parse_form("a[][b]=1").is_err());
        assert!(parse_form("a[]=1&a[x]=2").is_err());
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // python3: hmac.new(b"whsec_test_secret_0123456789",
        //   b'1700000000.{"id":"evt_1","object":"event","type":"checkout.session.completed"}', hashlib.sha256).hexdigest()
        let body = br#"{"id":"evt_1","object":"event","type":"checkout.session.completed"}"#;
        assert_eq!(
            signature_header("whsec_test_secret_0123456789", 1_700_000_000, body),
            "t=1700000000,v1=1843645399b5f3c6411330ff385d65ac72067f01bab5ff58a9356225f82f9f87"
        );
    }

    #[test]
    fn error_bodies_by_status() {
        assert_eq!(
            error_body(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"error": {"type": "api_error", "message": "Internal Server Error"}})
        );
        assert_eq!(error_body(StatusCode::SERVICE_UNAVAILABLE)["error"]["type"], "api_error");
        assert_eq!(error_body(StatusCode::TOO_MANY_REQUESTS)["error"]["type"], "rate_limit_error");
        assert_eq!(error_body(StatusCode::UNAUTHORIZED)["error"]["type"], "authentication_error");
        assert_eq!(error_body(StatusCode::PAYMENT_REQUIRED)["error"]["type"], "card_error");
        assert_eq!(error_body(StatusCode::NOT_FOUND)["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn keys_and_routes() {
        let mut h = HeaderMap::new();
        assert!(authenticate(&h).is_err());
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk_test_abc"));
        assert!(authenticate(&h).is_ok());
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer rk_live_abc"));
        assert!(authenticate(&h).is_ok());
        // "sk_test_abc:" in Basic, as `curl -u sk_test_abc:` sends it.
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic c2tfdGVzdF9hYmM6"));
        assert!(authenticate(&h).is_ok());
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer pk_test_abcdef"));
        let err = authenticate(&h).expect_err("publishable");
        assert_eq!(err.message, "Invalid API Key provided: pk_****cdef");
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk_"));
        assert!(authenticate(&h).is_err());
        assert!(matches!(route(&Method::POST, "/v1/checkout/sessions/cs_1/expire"), Some(Route::ExpireSession(id)) if id == "cs_1"));
        assert!(route(&Method::GET, "/v1/checkout/sessions").is_none());
        assert!(route(&Method::GET, "/v1/customers/").is_none());
        assert!(route(&Method::DELETE, "/v1/customers/cus_1").is_none());
    }

    #[test]
    fn ids_are_tagged_and_never_repeat() {
        let state = StripeState::default();
        let a = state.id("cus_fake_");
        state.clear();
        let b = state.id("cus_fake_");
        assert_ne!(a, b);
        assert!(a.starts_with("cus_fake_") && a[9..].bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(StripeState::default().tag, state.tag);
    }
}
