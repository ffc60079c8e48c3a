//! Stand-in for providers that have no fake of their own yet: every path
//! answers 404 `{"error":{"message":"not found","type":"not_found"}}` (and
//! is still recorded and scriptable like any other).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;

/// Routes of a provider without a fake: only the 404 fallback.
pub fn routes() -> Router<AppState> {
    Router::new().fallback(not_found)
}

pub fn not_found_body() -> Value {
    json!({"error": {"message": "not found", "type": "not_found"}})
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(not_found_body())).into_response()
}

/// Body of a scripted failure without a body: the status's reason phrase
/// and a snake_case type (`429` → `"too_many_requests"`).
pub fn error_body(status: StatusCode) -> Value {
    let reason = status.canonical_reason().unwrap_or("error");
    let kind: String = reason.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    json!({"error": {"message": reason.to_ascii_lowercase(), "type": kind}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_uses_reason_phrase() {
        assert_eq!(
            error_body(StatusCode::TOO_MANY_REQUESTS),
            json!({"error": {"message": "too many requests", "type": "too_many_requests"}})
        );
        assert_eq!(error_body(StatusCode::NOT_FOUND), json!({"error": {"message": "not found", "type": "not_found"}}));
    }
}
