//! Errors in the OpenAI shape: `{"error":{"message","type","code"}}`.
//!
//! Every client of this product (OpenAI SDKs, the Dexto CLI, Dex) parses this
//! shape, so every failure the Worker answers goes through [`ApiError`].

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// OpenAI's `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// Machine-readable code, e.g. `not_found`.
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after_secs: Option<u64>,
    /// Extra members merged into the `error` object (e.g. `balance_usd`).
    pub extra: Option<Value>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, code, message: message.into(), retry_after_secs: None, extra: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message)
    }

    pub fn invalid_json(detail: impl std::fmt::Display) -> Self {
        Self::bad_request("invalid_json", format!("The request body is not valid JSON: {detail}"))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "authentication_error", "invalid_api_key", message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(403, "permission_error", code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "invalid_request_error", "not_found", message)
    }

    pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> Self {
        Self::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            format!("{method} is not allowed on {path}; allowed: {}", allowed.join(", ")),
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, "invalid_request_error", code, message)
    }

    pub fn payload_too_large(limit_bytes: u64) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "payload_too_large",
            format!("The request body is larger than the limit of {limit_bytes} bytes."),
        )
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e =
            Self::new(429, "rate_limit_error", "rate_limit_exceeded", format!("Rate limit reached. Retry after {retry_after_secs} s."));
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    pub fn upstream(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, "upstream_error", "upstream_error", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(503, "server_error", code, message)
    }

    /// An unexpected failure of our own. The message stays generic on purpose:
    /// internal details go to the log, never to the client.
    pub fn internal() -> Self {
        Self::new(500, "server_error", "internal_error", "Internal error. Retry later; quote the request id when reporting it.")
    }

    pub fn with_extra(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    pub fn body(&self) -> Value {
        let mut inner = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
        });
        if let (Some(Value::Object(extra)), Some(obj)) = (&self.extra, inner.as_object_mut()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        json!({ "error": inner })
    }
}

impl ApiError {
    /// The same error in the Anthropic Messages API's shape, for clients of
    /// `/v1/messages` (the Anthropic SDK parses this one).
    pub fn anthropic_body(&self) -> Value {
        let kind = match self.status {
            400 | 404 if self.code == "model_not_found" => "not_found_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 | 503 => "overloaded_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        };
        json!({"type": "error", "error": {"type": kind, "message": self.message, "code": self.code}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let b = ApiError::not_found("No route for GET /nope").body();
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["code"], "not_found");
        assert_eq!(b["error"]["message"], "No route for GET /nope");
    }

    #[test]
    fn extra_members_merge_into_error() {
        let b = ApiError::new(402, "insufficient_credits", "INSUFFICIENT_CREDITS", "Insufficient credits. Balance: $0.12.")
            .with_extra(json!({"balance_usd": 0.12}))
            .body();
        assert_eq!(b["error"]["balance_usd"], 0.12);
        assert_eq!(b["error"]["code"], "INSUFFICIENT_CREDITS");
    }

    #[test]
    fn anthropic_shape() {
        let b = ApiError::unauthorized("no key").anthropic_body();
        assert_eq!(b["type"], "error");
        assert_eq!(b["error"]["type"], "authentication_error");
        assert_eq!(ApiError::rate_limited(1).anthropic_body()["error"]["type"], "rate_limit_error");
        assert_eq!(ApiError::upstream(502, "x").anthropic_body()["error"]["type"], "api_error");
        assert_eq!(ApiError::bad_request("missing_model", "x").anthropic_body()["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let e = ApiError::rate_limited(3);
        assert_eq!(e.status, 429);
        assert_eq!(e.retry_after_secs, Some(3));
    }
}
