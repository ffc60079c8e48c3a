//! Stripe: form-encoded requests with the secret key, an `Idempotency-Key`
//! on every write, a pinned API version, errors mapped to ours.

use std::time::Duration;

use dex_shared::error::ApiError;
use dex_shared::stripe::{form_encode, map_error};
use serde_json::Value;
use worker::{Headers, Method};

use super::http::{call_json, CallError};
use crate::config::Config;
use crate::logging;

/// The API version every request is made (and every webhook is read) with.
pub const API_VERSION: &str = "2025-09-30.clover";
const TIMEOUT: Duration = Duration::from_secs(15);

pub struct Stripe {
    base: String,
    key: String,
}

/// A failed Stripe call: our error, and whether retrying can help.
pub struct StripeFailure {
    pub error: ApiError,
    pub retryable: bool,
}

impl Stripe {
    pub fn from_config(c: &Config) -> Result<Self, ApiError> {
        let missing = |name: &str| {
            logging::emit(logging::error("config.missing_secret").field("name", name));
            ApiError::unavailable("not_configured", "Payments are not configured.")
        };
        Ok(Self {
            base: c.base_url("STRIPE_BASE_URL").ok_or_else(|| missing("STRIPE_BASE_URL"))?,
            key: c.get("STRIPE_SECRET_KEY").ok_or_else(|| missing("STRIPE_SECRET_KEY"))?,
        })
    }

    fn headers(&self, idempotency_key: Option<&str>) -> Result<Headers, StripeFailure> {
        let h = Headers::new();
        let fail = |_| StripeFailure { error: ApiError::internal(), retryable: false };
        h.set("authorization", &format!("Bearer {}", self.key)).map_err(fail)?;
        h.set("stripe-version", API_VERSION).map_err(fail)?;
        h.set("content-type", "application/x-www-form-urlencoded").map_err(fail)?;
        if let Some(k) = idempotency_key {
            h.set("idempotency-key", k).map_err(fail)?;
        }
        Ok(h)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        params: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeFailure> {
        let body = params.map(form_encode);
        let result = call_json(method, &format!("{}{path}", self.base), self.headers(idempotency_key)?, body, TIMEOUT).await;
        let (status, v) = match result {
            Ok(r) => r,
            Err(e) => {
                logging::emit(logging::warn("stripe.unreachable").field("path", path).field("detail", e.to_string()));
                let error = match e {
                    CallError::Timeout(_) => ApiError::new(504, "upstream_error", "stripe_timeout", "Stripe did not answer in time."),
                    CallError::Connect(_) => ApiError::upstream(502, "Stripe is unreachable."),
                };
                return Err(StripeFailure { error, retryable: true });
            }
        };
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let (ours, code, message) = map_error(status, &v);
        logging::emit(logging::warn("stripe.error").field("path", path).field("status", status).field("code", code));
        let kind = if ours >= 500 { "upstream_error" } else { "invalid_request_error" };
        Err(StripeFailure { error: ApiError::new(ours, kind, code, message), retryable: status == 429 || status >= 500 })
    }

    pub async fn post(&self, path: &str, params: &Value, idempotency_key: &str) -> Result<Value, StripeFailure> {
        self.call(Method::Post, path, Some(params), Some(idempotency_key)).await
    }
}
