//! Recording of every request made to a provider prefix, and the
//! `/__fakes/requests` control endpoints that read and clear it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use axum::body::{to_bytes, Body};
use axum::extract::{OriginalUri, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{control_error, now_ms, AppState, ProviderCtx, RequestInfo};

/// Largest request body accepted (and recorded).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Oldest recordings are dropped past this many.
pub const MAX_RECORDED: usize = 10_000;

/// One recorded request, as `GET /__fakes/requests` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// 1, 2, 3 … in arrival order over the server's life (not reset by
    /// clearing).
    pub seq: u64,
    /// `"openai"`, `"openrouter"`, …
    pub provider: String,
    pub method: String,
    /// Path after the provider prefix (`/v1/chat/completions`); for
    /// OpenRouter after `/openrouter/api`.
    pub path: String,
    /// Raw query string without `?`, or `""`.
    pub query: String,
    /// The path as received, prefix included (`/openrouter/api/v1/models`).
    #[serde(default)]
    pub full_path: String,
    /// Lower-cased header names; repeated headers joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The raw body, decoded as UTF-8 (lossy).
    pub body: String,
    pub received_at_ms: u64,
}

impl RecordedRequest {
    /// A header's value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json_body(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// `GET /__fakes/requests` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequests {
    pub requests: Vec<RecordedRequest>,
}

/// Filters of `GET /__fakes/requests` (all optional, all exact).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl RequestFilter {
    fn matches(&self, r: &RecordedRequest) -> bool {
        self.provider.as_deref().is_none_or(|p| p == r.provider)
            && self.path.as_deref().is_none_or(|p| p == r.path)
            && self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(&r.method))
    }
}

/// The recording of one server.
#[derive(Debug, Default)]
pub struct Recorder {
    last_seq: AtomicU64,
    requests: Mutex<VecDeque<RecordedRequest>>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, VecDeque<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Next `seq`, starting at 1.
    pub fn next_seq(&self) -> u64 {
        self.last_seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn push(&self, request: RecordedRequest) {
        let mut requests = self.lock();
        if requests.len() >= MAX_RECORDED {
            requests.pop_front();
        }
        requests.push_back(request);
    }

    /// Recorded requests matching `filter`, in arrival order.
    pub fn list(&self, filter: &RequestFilter) -> Vec<RecordedRequest> {
        let mut out: Vec<RecordedRequest> = self.lock().iter().filter(|r| filter.matches(r)).cloned().collect();
        out.sort_by_key(|r| r.seq);
        out
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

pub(crate) fn headers_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// Records the request (path relative to the mount), then hands it on with
/// a [`RequestInfo`] extension.
pub(crate) async fn middleware(State(ctx): State<ProviderCtx>, OriginalUri(original): OriginalUri, req: Request, next: Next) -> Response {
    let seq = ctx.state.recorder.next_seq();
    let received_at_ms = now_ms();
    let (mut parts, body) = req.into_parts();
    let (bytes, too_large) = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => (bytes, false),
        Err(_) => (bytes::Bytes::new(), true),
    };
    ctx.state.recorder.push(RecordedRequest {
        seq,
        provider: ctx.provider.name.to_owned(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        full_path: original.path().to_owned(),
        headers: headers_map(&parts.headers),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        received_at_ms,
    });
    if too_large {
        return (StatusCode::PAYLOAD_TOO_LARGE, Json((ctx.provider.error_body)(StatusCode::PAYLOAD_TOO_LARGE))).into_response();
    }
    parts.extensions.insert(RequestInfo { seq, provider: ctx.provider });
    let mut response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if let Some(name) = ctx.provider.request_id_header {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&format!("req_fake_{seq}"))) {
            response.headers_mut().entry(name).or_insert(value);
        }
    }
    response
}

/// `GET /__fakes/requests[?provider=&path=&method=]`
pub(crate) async fn list_handler(
    State(state): State<AppState>,
    filter: Result<Query<RequestFilter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match filter {
        Ok(Query(filter)) => Json(RecordedRequests { requests: state.recorder.list(&filter) }).into_response(),
        Err(e) => control_error(StatusCode::BAD_REQUEST, e.body_text()),
    }
}

/// `DELETE /__fakes/requests`
pub(crate) async fn clear_handler(State(state): State<AppState>) -> Json<Value> {
    state.recorder.clear();
    Json(json!({"ok": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, provider: &str, method: &str, path: &str) -> RecordedRequest {
        RecordedRequest {
            seq,
            provider: provider.into(),
            method: method.into(),
            path: path.into(),
            query: String::new(),
            full_path: String::new(),
            headers: BTreeMap::new(),
            body: String::new(),
            received_at_ms: 0,
        }
    }

    #[test]
    fn filters_and_order() {
        let r = Recorder::default();
        r.push(rec(2, "openai", "POST", "/v1/chat/completions"));
        r.push(rec(1, "openai", "GET", "/v1/models"));
        r.push(rec(3, "openrouter", "POST", "/v1/chat/completions"));
        let all = r.list(&RequestFilter::default());
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let f = RequestFilter { provider: Some("openai".into()), path: Some("/v1/chat/completions".into()), method: Some("post".into()) };
        assert_eq!(r.list(&f).len(), 1);
        r.clear();
        assert!(r.list(&RequestFilter::default()).is_empty());
        assert_eq!(r.next_seq(), 1);
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut h = HeaderMap::new();
        h.append("x-a", "1".parse().expect("static header value"));
        h.append("x-a", "2".parse().expect("static header value"));
        assert_eq!(headers_map(&h).get("x-a").map(String::as_str), Some("1, 2"));
    }
}
