//! Twilio Verify: send and check one-time codes (phone login).
//! `POST /v2/Services/{sid}/Verifications` and `/VerificationCheck`, form
//! bodies, HTTP Basic auth with the account SID and auth token.

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use dex_shared::error::ApiError;
use worker::{Headers, Method};

use super::http::{call_json, CallError};
use crate::config::Config;
use crate::logging;

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Verify {
    base: String,
    service_sid: String,
    basic: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CheckResult {
    Approved,
    /// Wrong code: the verification stays pending.
    Wrong,
    /// No pending verification for this number (expired, used, or never sent).
    NotFound,
}

fn upstream_failure(what: &str, e: CallError) -> ApiError {
    logging::emit(logging::warn("twilio.unreachable").field("call", what).field("detail", e.to_string()));
    match e {
        CallError::Timeout(_) => {
            ApiError::new(504, "upstream_error", "upstream_timeout", "The verification service did not answer in time.")
        }
        CallError::Connect(_) => ApiError::upstream(502, "The verification service is unreachable."),
    }
}

/// Twilio errors mapped to ours; Twilio's own message is logged, not shown.
fn twilio_error(what: &str, status: u16, body: &serde_json::Value) -> ApiError {
    let code = body["code"].as_i64().unwrap_or(0);
    logging::emit(logging::warn("twilio.error").field("call", what).field("status", status).field("twilio_code", code));
    match (status, code) {
        (429, _) | (_, 60202) | (_, 60203) => ApiError::rate_limited(60),
        (400, 60200) | (400, 21211) | (400, 21614) => ApiError::bad_request("invalid_phone", "That phone number cannot receive a code."),
        (400..=499, _) => ApiError::upstream(502, "The verification service refused the request."),
        _ => ApiError::upstream(502, "The verification service failed."),
    }
}

impl Verify {
    pub fn from_config(c: &Config) -> Result<Self, ApiError> {
        let missing = |name: &str| {
            logging::emit(logging::error("config.missing_secret").field("name", name));
            ApiError::unavailable("not_configured", "Phone sign-in is not configured.")
        };
        let base = c.base_url("TWILIO_VERIFY_BASE_URL").ok_or_else(|| missing("TWILIO_VERIFY_BASE_URL"))?;
        let sid = c.get("TWILIO_ACCOUNT_SID").ok_or_else(|| missing("TWILIO_ACCOUNT_SID"))?;
        let token = c.get("TWILIO_AUTH_TOKEN").ok_or_else(|| missing("TWILIO_AUTH_TOKEN"))?;
        let service_sid = c.get("TWILIO_VERIFY_SERVICE_SID").ok_or_else(|| missing("TWILIO_VERIFY_SERVICE_SID"))?;
        Ok(Self { base, service_sid, basic: STANDARD.encode(format!("{sid}:{token}")) })
    }

    fn headers(&self) -> Result<Headers, ApiError> {
        let h = Headers::new();
        let set = |k: &str, v: &str| h.set(k, v).map_err(|_| ApiError::internal());
        set("authorization", &format!("Basic {}", self.basic))?;
        set("content-type", "application/x-www-form-urlencoded")?;
        set("accept", "application/json")?;
        Ok(h)
    }

    async fn post(&self, what: &str, path: &str, form: &[(&str, &str)]) -> Result<(u16, serde_json::Value), ApiError> {
        let body = serde_urlencoded::to_string(form).map_err(|_| ApiError::internal())?;
        let url = format!("{}/v2/Services/{}/{path}", self.base, self.service_sid);
        call_json(Method::Post, &url, self.headers()?, Some(body), TIMEOUT).await.map_err(|e| upstream_failure(what, e))
    }

    pub async fn send_code(&self, phone: &str) -> Result<(), ApiError> {
        let (status, body) = self.post("verifications", "Verifications", &[("To", phone), ("Channel", "sms")]).await?;
        match status {
            200..=299 => Ok(()),
            _ => Err(twilio_error("verifications", status, &body)),
        }
    }

    pub async fn check_code(&self, phone: &str, code: &str) -> Result<CheckResult, ApiError> {
        let (status, body) = self.post("verification_check", "VerificationCheck", &[("To", phone), ("Code", code)]).await?;
        match status {
            200..=299 if body["status"] == "approved" && body["valid"] != false => Ok(CheckResult::Approved),
            200..=299 => Ok(CheckResult::Wrong),
            404 => Ok(CheckResult::NotFound),
            _ => Err(twilio_error("verification_check", status, &body)),
        }
    }
}
