//! Outbound HTTP with a deadline, shared by the provider clients.

use std::time::Duration;

use futures_util::future::{select, Either};
use serde_json::Value;
use worker::{Fetch, Headers, Method, Request, RequestInit};

#[derive(Debug)]
pub enum CallError {
    /// Could not connect, or the connection broke.
    Connect(String),
    Timeout(Duration),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "connect failed: {e}"),
            CallError::Timeout(d) => write!(f, "timed out after {} s", d.as_secs()),
        }
    }
}

/// Sends a request and reads a JSON answer (null when the body is not JSON).
pub async fn call_json(
    method: Method,
    url: &str,
    headers: Headers,
    body: Option<String>,
    timeout: Duration,
) -> Result<(u16, Value), CallError> {
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(b) = body {
        init.with_body(Some(wasm_bindgen::JsValue::from_str(&b)));
    }
    let req = Request::new_with_init(url, &init).map_err(|e| CallError::Connect(e.to_string()))?;
    let fetch = Fetch::Request(req);
    let send = Box::pin(fetch.send());
    let deadline = Box::pin(worker::Delay::from(timeout));
    let mut resp = match select(send, deadline).await {
        Either::Left((r, _)) => r.map_err(|e| CallError::Connect(e.to_string()))?,
        Either::Right(_) => return Err(CallError::Timeout(timeout)),
    };
    let status = resp.status_code();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}
