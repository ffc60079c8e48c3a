//! Scripted failures: `POST /__fakes/script` queues a [`ScriptSpec`];
//! requests to the matching provider path consume it, FIFO.
//!
//! A matched script can delay the answer, replace it by a status and body
//! (the provider's own error shape when no body is given), add headers,
//! slow down or cut a streamed answer, and drop the usage chunk of a
//! stream ([`ScriptControls`], read by the provider).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use super::{control_error, provider, AppState, ProviderCtx};

/// One scripted behaviour, as posted to `POST /__fakes/script`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    /// `"openai"`, `"openrouter"`, … (see `PROVIDER_NAMES`).
    pub provider: String,
    /// Only requests of this method match; any method when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path after the provider prefix (`/v1/chat/completions`), exact; a
    /// trailing `*` matches any path with that prefix (`"*"` matches all).
    pub path: String,
    /// Matching requests this script answers: 1 when absent; `null` or 0
    /// means every matching request until the scripts are cleared.
    #[serde(default = "one_time", deserialize_with = "deserialize_times")]
    pub times: Option<u64>,
    /// Answer this status instead of the normal answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Answer body (JSON). With `status`, replaces the provider's error
    /// shape; without, answers 200 with this body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Headers added to the answer (scripted or normal).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Wait this long before the answer's first byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Wait this long between body writes (SSE events) of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_delay_ms: Option<u64>,
    /// Send this many body writes (SSE events), then drop the connection
    /// without finishing the body (0: headers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_after_chunks: Option<u64>,
    /// Stream without the usage chunk even when the request asks for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omit_usage: bool,
    /// Only requests whose body contains this text match, so tests running
    /// at the same time can script their own requests without meeting
    /// each other's scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

fn one_time() -> Option<u64> {
    Some(1)
}

fn deserialize_times<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.filter(|&n| n > 0))
}

impl ScriptSpec {
    fn matches(&self, provider: &str, method: &str, path: &str, body: &str) -> bool {
        self.body_contains.as_deref().is_none_or(|needle| body.contains(needle))
            && self.provider == provider
            && self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && match self.path.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => self.path == path,
            }
    }

    /// Checks the spec and puts `method` in upper case.
    fn validate(mut self) -> Result<Self, String> {
        if provider(&self.provider).is_none() {
            return Err(format!("unknown provider {:?}; known: {}", self.provider, super::PROVIDER_NAMES.join(", ")));
        }
        if !self.path.starts_with('/') && self.path != "*" {
            return Err(format!("path {:?} must start with '/' (the path after the provider prefix)", self.path));
        }
        if let Some(m) = &self.method {
            let upper = m.to_ascii_uppercase();
            Method::from_bytes(upper.as_bytes()).map_err(|_| format!("invalid method {m:?}"))?;
            self.method = Some(upper);
        }
        if let Some(s) = self.status {
            if !(100..=599).contains(&s) {
                return Err(format!("invalid status {s}"));
            }
        }
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?;
            HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name:?}"))?;
        }
        Ok(self)
    }
}

/// A queued script and the uses it has left.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveScript {
    pub id: u64,
    #[serde(flatten)]
    pub spec: ScriptSpec,
    /// `null`: until cleared.
    pub remaining: Option<u64>,
}

/// What a matched script asks of the provider handler (request extension).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScriptControls {
    pub omit_usage: bool,
}

/// The scripts of one server, in the order they were posted.
#[derive(Debug, Default)]
pub struct Scripts {
    last_id: AtomicU64,
    queue: Mutex<Vec<ActiveScript>>,
}

impl Scripts {
    fn lock(&self) -> MutexGuard<'_, Vec<ActiveScript>> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a validated spec; returns its id.
    pub fn add(&self, spec: ScriptSpec) -> u64 {
        let id = self.last_id.fetch_add(1, Ordering::SeqCst) + 1;
        let remaining = spec.times;
        self.lock().push(ActiveScript { id, spec, remaining });
        id
    }

    /// Consumes one use of the oldest script matching the request.
    pub fn take(&self, provider: &str, method: &str, path: &str) -> Option<ScriptSpec> {
        self.take_for_body(provider, method, path, "")
    }

    /// Like [`Scripts::take`], also matching `body_contains` against the body.
    pub fn take_for_body(&self, provider: &str, method: &str, path: &str, body: &str) -> Option<ScriptSpec> {
        let mut queue = self.lock();
        let index = queue.iter().position(|s| s.spec.matches(provider, method, path, body))?;
        let script = &mut queue[index];
        let spec = script.spec.clone();
        if let Some(left) = script.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                queue.remove(index);
            }
        }
        Some(spec)
    }

    pub fn list(&self) -> Vec<ActiveScript> {
        self.lock().clone()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// Applies the first matching script, if any, around the provider handler.
pub(crate) async fn middleware(State(ctx): State<ProviderCtx>, req: Request, next: Next) -> Response {
    // The body is read here (and put back) so scripts can match on it.
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut req = Request::from_parts(parts, Body::from(bytes));
    let Some(script) = ctx.state.scripts.take_for_body(ctx.provider.name, req.method().as_str(), req.uri().path(), &text) else {
        return next.run(req).await;
    };
    if let Some(ms) = script.delay_ms.filter(|&ms| ms > 0) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut response = match (script.status, script.body) {
        (Some(status), body) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = body.unwrap_or_else(|| (ctx.provider.error_body)(status));
            (status, Json(body)).into_response()
        }
        (None, Some(body)) => Json(body).into_response(),
        (None, None) => {
            req.extensions_mut().insert(ScriptControls { omit_usage: script.omit_usage });
            next.run(req).await
        }
    };
    for (name, value) in &script.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    let chunk_delay = script.chunk_delay_ms.filter(|&ms| ms > 0).map(Duration::from_millis);
    if chunk_delay.is_some() || script.abort_after_chunks.is_some() {
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        let body = shape_body(body, chunk_delay, script.abort_after_chunks);
        response = Response::from_parts(parts, body);
    }
    response
}

/// Pause between the last write and the abort of a cut answer.
const ABORT_FLUSH_PAUSE: Duration = Duration::from_millis(50);

/// Re-emits `body` write by write, sleeping `chunk_delay` between writes
/// and failing the body (hyper then drops the connection without ending
/// the chunked body) once `abort_after` writes are out.
fn shape_body(body: Body, chunk_delay: Option<Duration>, abort_after: Option<u64>) -> Body {
    let stream = async_stream::stream! {
        let mut frames = body.into_data_stream();
        let mut sent: u64 = 0;
        loop {
            if abort_after == Some(sent) {
                // Let hyper flush the head and the events sent so far (it
                // flushes when the body is pending), and the client read
                // them, before the connection goes.
                tokio::time::sleep(ABORT_FLUSH_PAUSE).await;
                yield Err(io::Error::new(io::ErrorKind::ConnectionAborted, "scripted abort"));
                break;
            }
            match frames.next().await {
                Some(Ok(bytes)) => {
                    if sent > 0 {
                        if let Some(delay) = chunk_delay {
                            tokio::time::sleep(delay).await;
                        }
                    }
                    sent += 1;
                    yield Ok::<Bytes, io::Error>(bytes);
                }
                Some(Err(e)) => {
                    yield Err(io::Error::other(e));
                    break;
                }
                None => break,
            }
        }
    };
    Body::from_stream(stream)
}

/// `POST /__fakes/script`: one spec object, or an array of them.
pub(crate) async fn add_handler(State(state): State<AppState>, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return control_error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut specs = Vec::with_capacity(items.len());
    for item in items {
        let spec = serde_json::from_value::<ScriptSpec>(item).map_err(|e| e.to_string()).and_then(ScriptSpec::validate);
        match spec {
            Ok(spec) => specs.push(spec),
            Err(message) => return control_error(StatusCode::BAD_REQUEST, format!("invalid script: {message}")),
        }
    }
    let ids: Vec<u64> = specs.into_iter().map(|s| state.scripts.add(s)).collect();
    Json(json!({"ok": true, "ids": ids})).into_response()
}

/// `GET /__fakes/script`
pub(crate) async fn list_handler(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"scripts": state.scripts.list()}))
}

/// `DELETE /__fakes/script`
pub(crate) async fn clear_handler(State(state): State<AppState>) -> Json<Value> {
    state.scripts.clear();
    Json(json!({"ok": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> Result<ScriptSpec, String> {
        serde_json::from_value::<ScriptSpec>(v).map_err(|e| e.to_string()).and_then(ScriptSpec::validate)
    }

    #[test]
    fn times_default_null_and_zero() {
        let one = spec(json!({"provider":"openai","path":"/v1/models"})).expect("valid");
        assert_eq!(one.times, Some(1));
        let null = spec(json!({"provider":"openai","path":"/x","times":null})).expect("valid");
        assert_eq!(null.times, None);
        let zero = spec(json!({"provider":"openai","path":"/x","times":0})).expect("valid");
        assert_eq!(zero.times, None);
        let three = spec(json!({"provider":"openai","path":"/x","times":3})).expect("valid");
        assert_eq!(three.times, Some(3));
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(spec(json!({"provider":"nope","path":"/x"})).is_err());
        assert!(spec(json!({"provider":"openai","path":"x"})).is_err());
        assert!(spec(json!({"provider":"openai","path":"/x","status":42})).is_err());
        assert!(spec(json!({"provider":"openai","path":"/x","delay":5})).is_err());
        assert!(spec(json!({"provider":"openai","path":"/x","headers":{"a b":"c"}})).is_err());
    }

    #[test]
    fn fifo_per_path_and_method_filter() {
        let scripts = Scripts::default();
        let s = |v: Value| spec(v).expect("valid");
        scripts.add(s(json!({"provider":"openai","path":"/a","status":500,"times":2})));
        scripts.add(s(json!({"provider":"openai","path":"/a","status":429})));
        scripts.add(s(json!({"provider":"openai","path":"/b","method":"get","status":401})));
        let take = |m: &str, p: &str| scripts.take("openai", m, p).and_then(|s| s.status);
        assert_eq!(take("POST", "/b"), None);
        assert_eq!(take("GET", "/b"), Some(401));
        assert_eq!(take("POST", "/a"), Some(500));
        assert_eq!(take("POST", "/a"), Some(500));
        assert_eq!(take("POST", "/a"), Some(429));
        assert_eq!(take("POST", "/a"), None);
        assert!(scripts.list().is_empty());
    }

    #[test]
    fn unlimited_and_wildcard() {
        let scripts = Scripts::default();
        scripts.add(spec(json!({"provider":"openrouter","path":"/v1/*","times":null,"status":503})).expect("valid"));
        for _ in 0..5 {
            assert!(scripts.take("openrouter", "POST", "/v1/chat/completions").is_some());
        }
        assert!(scripts.take("openai", "POST", "/v1/chat/completions").is_none());
        assert_eq!(scripts.list().len(), 1);
        assert_eq!(scripts.list()[0].remaining, None);
    }
}
