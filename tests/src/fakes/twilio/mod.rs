//! Fake of Twilio Verify v2: start a verification (a random 6-digit code
//! "is sent") and check it, with Twilio's limits and error shapes.
//!
//! Mounted at `/twilio`, paths relative to it:
//! - `POST /v2/Services/{ServiceSid}/Verifications` (`To`, `Channel`):
//!   201 with a `pending` Verification; a new send to the same
//!   (service, `To`) replaces the pending one (new sid, new code). The
//!   ([`MAX_SEND_ATTEMPTS`] + 1)th send to a (service, `To`) without an
//!   approved check in between: 429 `60203`.
//! - `POST /v2/Services/{ServiceSid}/VerificationCheck` (`To` or
//!   `VerificationSid`, and `Code`): right code 200 `approved` (the
//!   verification is gone); wrong code 200 `pending`, and the
//!   [`MAX_CHECK_ATTEMPTS`]th wrong code 429 `60202` (gone too); nothing
//!   pending: 404 `20404`.
//!
//! Auth is HTTP Basic `AccountSid:AuthToken` with an `AC…` account sid
//! (any token but empty); bodies must be `application/x-www-form-urlencoded`.
//! Tests read the code that "was texted" from the control plane:
//! `GET /__fakes/twilio/verifications?to=%2B14155550123`.

pub mod wire;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{control_error, now_ms, now_secs, AppState};
use wire::*;

/// Sends allowed to one (service, `To`) until a check approves it.
pub const MAX_SEND_ATTEMPTS: u32 = 5;
/// Wrong codes allowed per verification; the last one answers 429.
pub const MAX_CHECK_ATTEMPTS: u32 = 5;
/// Digits of the code sent.
pub const CODE_LENGTH: usize = 6;
/// Accepted `Channel` values.
pub const CHANNELS: [&str; 4] = ["sms", "call", "email", "whatsapp"];

/// Twilio error codes used here.
pub const CODE_AUTHENTICATE: u32 = 20003;
pub const CODE_NOT_FOUND: u32 = 20404;
pub const CODE_TOO_MANY_REQUESTS: u32 = 20429;
pub const CODE_INTERNAL: u32 = 20500;
pub const CODE_INVALID_PARAMETER: u32 = 60200;
pub const CODE_MAX_CHECK_ATTEMPTS: u32 = 60202;
pub const CODE_MAX_SEND_ATTEMPTS: u32 = 60203;

const VERIFY_BASE_URL: &str = "https://verify.twilio.com/v2";

// ------------------------------------------------------------------ routes

/// Twilio Verify v2, paths relative to the mount (`/v2/...`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Services/{service_sid}/Verifications", post(create_verification).fallback(not_found))
        .route("/v2/Services/{service_sid}/VerificationCheck", post(check_verification).fallback(not_found))
        .route_layer(from_fn(require_basic_auth))
        .fallback(not_found)
}

// ------------------------------------------------------------------ errors

/// A Twilio error answer.
#[derive(Debug, Clone)]
pub struct TwilioError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl TwilioError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code, message: self.message.clone(), more_info: more_info(self.code), status: self.status.as_u16() }
    }
}

impl IntoResponse for TwilioError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Twilio API\""));
        }
        response
    }
}

fn more_info(code: u32) -> String {
    format!("https://www.twilio.com/docs/errors/{code}")
}

/// 400 `60200` "Invalid parameter `name`: value".
fn invalid_parameter(name: &str, value: &str) -> TwilioError {
    TwilioError::new(StatusCode::BAD_REQUEST, CODE_INVALID_PARAMETER, format!("Invalid parameter `{name}`: {value}"))
}

/// 404 `20404` for a path (shown without the `/v2` version, as Twilio does).
fn resource_not_found(path: &str) -> TwilioError {
    let path = path.strip_prefix("/v2").filter(|p| p.starts_with('/')).unwrap_or(path);
    TwilioError::new(StatusCode::NOT_FOUND, CODE_NOT_FOUND, format!("The requested resource {path} was not found"))
}

/// The Twilio error code for a status, for scripted failures without a body.
pub fn error_code(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => CODE_INVALID_PARAMETER,
        401 => CODE_AUTHENTICATE,
        404 => CODE_NOT_FOUND,
        429 => CODE_TOO_MANY_REQUESTS,
        500..=599 => CODE_INTERNAL,
        other => 20_000 + u32::from(other),
    }
}

/// The Twilio error body for `status` (scripted failures without a body):
/// `{"code","message":<reason phrase>,"more_info","status"}`.
pub fn error_body(status: StatusCode) -> Value {
    let error = TwilioError::new(status, error_code(status), status.canonical_reason().unwrap_or("Error"));
    serde_json::to_value(error.body()).unwrap_or(Value::Null)
}

async fn not_found(uri: Uri) -> TwilioError {
    resource_not_found(uri.path())
}

// -------------------------------------------------------------------- auth

/// The account sid of an authenticated request (request extension).
#[derive(Debug, Clone)]
struct AccountSid(String);

/// `AccountSid` of a valid `Authorization: Basic base64(AC…:token)`.
fn basic_account(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, token) = decoded.split_once(':')?;
    (user.starts_with("AC") && user.len() > 2 && !token.is_empty()).then(|| user.to_owned())
}

async fn require_basic_auth(mut req: Request, next: Next) -> Response {
    match basic_account(req.headers()) {
        Some(account) => {
            req.extensions_mut().insert(AccountSid(account));
            next.run(req).await
        }
        None => TwilioError::new(StatusCode::UNAUTHORIZED, CODE_AUTHENTICATE, "Authenticate").into_response(),
    }
}

/// Standard base64 with optional padding; `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for group in trimmed.as_bytes().chunks(4) {
        let mut n: u32 = 0;
        for (i, &c) in group.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

// ------------------------------------------------------------------- state

/// One pending verification.
#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    sid: String,
    service_sid: String,
    account_sid: String,
    to: String,
    channel: String,
    code: String,
    wrong_checks: u32,
    created: String,
}

#[derive(Debug, Default)]
struct Inner {
    last_seq: u64,
    /// Keyed by (service sid, `To`).
    pending: HashMap<(String, String), Pending>,
    /// Sends per (service sid, `To`) since the last approved check.
    sends: HashMap<(String, String), u32>,
}

/// Verifications of one fakes server.
#[derive(Debug, Default)]
pub struct VerifyState {
    inner: Mutex<Inner>,
}

/// Result of a check that found its verification.
enum CheckOutcome {
    Approved(Pending),
    Wrong(Pending),
}

impl VerifyState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets every verification and send count.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.pending.clear();
        inner.sends.clear();
    }

    /// The newest pending verification to `to` (any service).
    pub fn newest_pending(&self, to: &str) -> Option<PendingVerification> {
        self.lock().pending.values().filter(|p| p.to == to).max_by_key(|p| p.seq).map(|p| PendingVerification {
            to: p.to.clone(),
            code: p.code.clone(),
            status: "pending".to_owned(),
            channel: p.channel.clone(),
            service_sid: p.service_sid.clone(),
        })
    }

    /// Starts (or restarts) the verification of (service, `to`).
    fn send(&self, account_sid: &str, service_sid: &str, to: &str, channel: &str) -> Result<Pending, TwilioError> {
        let mut inner = self.lock();
        let key = (service_sid.to_owned(), to.to_owned());
        let sends = inner.sends.entry(key.clone()).or_insert(0);
        if *sends >= MAX_SEND_ATTEMPTS {
            return Err(TwilioError::new(StatusCode::TOO_MANY_REQUESTS, CODE_MAX_SEND_ATTEMPTS, "Max send attempts reached"));
        }
        *sends += 1;
        inner.last_seq += 1;
        let pending = Pending {
            seq: inner.last_seq,
            sid: random_sid("VE"),
            service_sid: service_sid.to_owned(),
            account_sid: account_sid.to_owned(),
            to: to.to_owned(),
            channel: channel.to_owned(),
            code: random_code(),
            wrong_checks: 0,
            created: iso8601(now_secs()),
        };
        inner.pending.insert(key, pending.clone());
        Ok(pending)
    }

    /// Checks `code` against the verification of (service, `to`), or of
    /// that sid; `None` when there is none.
    fn check(&self, service_sid: &str, target: &CheckTarget, code: &str) -> Result<Option<CheckOutcome>, TwilioError> {
        let mut inner = self.lock();
        let key = match target {
            CheckTarget::To(to) => (service_sid.to_owned(), to.clone()),
            CheckTarget::Sid(sid) => match inner.pending.iter().find(|(_, p)| p.sid == *sid && p.service_sid == service_sid) {
                Some((key, _)) => key.clone(),
                None => return Ok(None),
            },
        };
        let Some(pending) = inner.pending.get_mut(&key) else {
            return Ok(None);
        };
        if pending.code == code {
            let pending = inner.pending.remove(&key);
            inner.sends.remove(&key);
            return Ok(pending.map(CheckOutcome::Approved));
        }
        pending.wrong_checks += 1;
        if pending.wrong_checks >= MAX_CHECK_ATTEMPTS {
            inner.pending.remove(&key);
            return Err(TwilioError::new(StatusCode::TOO_MANY_REQUESTS, CODE_MAX_CHECK_ATTEMPTS, "Max check attempts reached"));
        }
        Ok(Some(CheckOutcome::Wrong(pending.clone())))
    }
}

enum CheckTarget {
    To(String),
    Sid(String),
}

// ---------------------------------------------------------------- handlers

/// The form, or 400 `60200` when the body is not a urlencoded form.
fn form_or_400<T>(form: Result<Form<T>, FormRejection>) -> Result<T, TwilioError> {
    form.map(|Form(f)| f).map_err(|e| {
        TwilioError::new(
            StatusCode::BAD_REQUEST,
            CODE_INVALID_PARAMETER,
            format!("Invalid parameter: the body must be an application/x-www-form-urlencoded form ({})", e.body_text()),
        )
    })
}

/// E.164: `+`, then 8 to 15 digits, the first not `0`.
pub fn is_e164(to: &str) -> bool {
    to.strip_prefix('+')
        .is_some_and(|digits| (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0'))
}

/// A plausible email address (for `Channel=email`).
fn is_email(to: &str) -> bool {
    to.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !to.contains(char::is_whitespace)
    })
}

async fn create_verification(
    State(state): State<AppState>,
    Path(service_sid): Path<String>,
    Extension(AccountSid(account_sid)): Extension<AccountSid>,
    form: Result<Form<CreateVerificationForm>, FormRejection>,
) -> Result<Response, TwilioError> {
    let form = form_or_400(form)?;
    let to = form.to.unwrap_or_default();
    let channel = form.channel.unwrap_or_default();
    let to_ok = is_e164(&to) || (channel == "email" && is_email(&to));
    if !to_ok {
        return Err(invalid_parameter("To", &to));
    }
    if !CHANNELS.contains(&channel.as_str()) {
        return Err(invalid_parameter("Channel", &channel));
    }
    let p = state.twilio.send(&account_sid, &service_sid, &to, &channel)?;
    let verification = Verification {
        url: format!("{VERIFY_BASE_URL}/Services/{}/Verifications/{}", p.service_sid, p.sid),
        send_code_attempts: vec![SendCodeAttempt { attempt_sid: random_sid("VL"), channel: p.channel.clone(), time: p.created.clone() }],
        sid: p.sid,
        service_sid: p.service_sid,
        account_sid: p.account_sid,
        to: p.to,
        channel: p.channel,
        status: "pending".to_owned(),
        valid: false,
        lookup: Map::new(),
        amount: None,
        payee: None,
        date_created: p.created.clone(),
        date_updated: p.created,
        sna: None,
    };
    Ok((StatusCode::CREATED, Json(verification)).into_response())
}

async fn check_verification(
    State(state): State<AppState>,
    Path(service_sid): Path<String>,
    uri: Uri,
    form: Result<Form<VerificationCheckForm>, FormRejection>,
) -> Result<Json<VerificationCheck>, TwilioError> {
    let form = form_or_400(form)?;
    let target = match (form.verification_sid.filter(|s| !s.is_empty()), form.to.filter(|s| !s.is_empty())) {
        (Some(sid), _) => CheckTarget::Sid(sid),
        (None, Some(to)) => CheckTarget::To(to),
        (None, None) => return Err(invalid_parameter("To", "")),
    };
    let code = form.code.unwrap_or_default();
    if code.is_empty() {
        return Err(invalid_parameter("Code", &code));
    }
    let (pending, approved) = match state.twilio.check(&service_sid, &target, &code)? {
        Some(CheckOutcome::Approved(p)) => (p, true),
        Some(CheckOutcome::Wrong(p)) => (p, false),
        None => return Err(resource_not_found(uri.path())),
    };
    Ok(Json(VerificationCheck {
        sid: pending.sid,
        service_sid: pending.service_sid,
        account_sid: pending.account_sid,
        to: pending.to,
        channel: pending.channel,
        status: if approved { "approved" } else { "pending" }.to_owned(),
        valid: approved,
        amount: None,
        payee: None,
        sna_attempts_error_codes: Vec::new(),
        date_created: pending.created,
        date_updated: iso8601(now_secs()),
    }))
}

// ----------------------------------------------------------- control plane

#[derive(Debug, Deserialize)]
pub(crate) struct VerificationsQuery {
    to: String,
}

/// `GET /__fakes/twilio/verifications?to=%2B14155550123`: the newest pending
/// verification to that number (its code), or 404 `{"error":"none"}`. An
/// unencoded `+` (decoded as a space) is taken as `+`.
pub(crate) async fn verifications_handler(
    State(state): State<AppState>,
    query: Result<Query<VerificationsQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return control_error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let to = match query.to.strip_prefix(' ') {
        Some(rest) => format!("+{rest}"),
        None => query.to,
    };
    match state.twilio.newest_pending(&to) {
        Some(found) => Json(found).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "none"}))).into_response(),
    }
}

// ----------------------------------------------------------------- helpers

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u64(now_ms());
    hasher.finish()
}

/// `prefix` + 32 lowercase hex digits.
fn random_sid(prefix: &str) -> String {
    format!("{prefix}{:016x}{:016x}", random_u64(), random_u64())
}

/// [`CODE_LENGTH`] random digits.
fn random_code() -> String {
    format!("{:06}", random_u64() % 1_000_000)
}

/// `2015-07-30T20:00:00Z` for Unix seconds.
pub fn iso8601(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3_600, rem % 3_600 / 60, rem % 60)
}

#[cfg(test)]
mod selftest;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(is_e164("+14155550123"));
        assert!(is_e164("+12345678"));
        assert!(is_e164("+123456789012345"));
        assert!(!is_e164("+1234567"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("14155550123"));
        assert!(!is_e164("+04155550123"));
        assert!(!is_e164("+1415555012a"));
        assert!(!is_e164(""));
        assert!(is_email("a@b.co"));
        assert!(!is_email("a@b"));
        assert!(!is_email("@b.co"));
    }

    #[test]
    fn basic_auth() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(basic_account(&h), None);
        // "ACabc:tok"
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic QUNhYmM6dG9r"));
        assert_eq!(basic_account(&h).as_deref(), Some("ACabc"));
        // "XYabc:tok"
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic WFlhYmM6dG9r"));
        assert_eq!(basic_account(&h), None);
        // "ACabc:" (empty token)
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic QUNhYmM6"));
        assert_eq!(basic_account(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_account(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer QUNhYmM6dG9r"));
        assert_eq!(basic_account(&h), None);
    }

    #[test]
    fn base64_decodes_rfc4648() {
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64_decode("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64_decode("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(base64_decode("Zm9vYmE").as_deref(), Some(&b"fooba"[..]));
        assert_eq!(base64_decode("Z"), None);
        assert_eq!(base64_decode("Zg==="), None);
    }

    #[test]
    fn dates_and_ids() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_438_286_400), "2015-07-30T20:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        let sid = random_sid("VE");
        assert_eq!(sid.len(), 34);
        assert!(sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(sid, random_sid("VE"));
        let code = random_code();
        assert_eq!(code.len(), CODE_LENGTH);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn error_body_by_status() {
        let body = error_body(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"code": 20500, "message": "Service Unavailable",
                   "more_info": "https://www.twilio.com/docs/errors/20500", "status": 503})
        );
        assert_eq!(error_body(StatusCode::TOO_MANY_REQUESTS)["code"], 20429);
        assert_eq!(error_body(StatusCode::NOT_FOUND)["code"], 20404);
        assert_eq!(error_body(StatusCode::BAD_REQUEST)["code"], 60200);
        assert_eq!(error_body(StatusCode::UNAUTHORIZED)["code"], 20003);
        assert_eq!(error_body(StatusCode::UNAUTHORIZED)["message"], "Unauthorized");
    }

    #[test]
    fn send_and_check_limits() {
        let state = VerifyState::default();
        for _ in 0..MAX_SEND_ATTEMPTS {
            state.send("AC1", "VA1", "+14155550123", "sms").expect("send");
        }
        let err = state.send("AC1", "VA1", "+14155550123", "sms").expect_err("limit");
        assert_eq!((err.status, err.code), (StatusCode::TOO_MANY_REQUESTS, CODE_MAX_SEND_ATTEMPTS));
        // Other service, other number: own counts.
        state.send("AC1", "VA2", "+14155550123", "sms").expect("send");
        let code = state.newest_pending("+14155550123").expect("pending").code;
        let to = CheckTarget::To("+14155550123".into());
        assert!(matches!(state.check("VA2", &to, &code), Ok(Some(CheckOutcome::Approved(_)))));
        assert!(matches!(state.check("VA2", &to, &code), Ok(None)));
        state.clear();
        assert!(state.newest_pending("+14155550123").is_none());
        state.send("AC1", "VA1", "+14155550123", "sms").expect("send after clear");
    }
}
