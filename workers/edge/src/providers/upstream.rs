//! AI upstreams (OpenAI, OpenRouter, Anthropic): where each lives, how it is
//! authenticated, and one call with a first-byte deadline. The request and
//! response bodies are built by `dex_shared::translate`; this is the wire.

use std::time::Duration;

use dex_shared::models::Provider;
use futures_util::future::{select, Either};
use worker::{Fetch, Headers, Method, Request, RequestInit, Response};

use crate::config::Config;

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Base URL and key of an upstream, if configured.
pub fn endpoint(c: &Config, provider: Provider) -> Option<(String, String)> {
    let (base, key) = match provider {
        Provider::OpenAi => ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
        Provider::OpenRouter => ("OPENROUTER_BASE_URL", "OPENROUTER_API_KEY"),
        Provider::Anthropic => ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
    };
    Some((c.base_url(base)?, c.get(key)?))
}

pub enum Failure {
    Connect(String),
    Timeout,
}

/// POSTs JSON to an upstream; returns once the status and headers arrived
/// (the body may still be streaming) or the deadline passed.
pub async fn post(provider: Provider, base: &str, key: &str, path: &str, body: &str, first_byte: Duration) -> Result<Response, Failure> {
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| Failure::Connect(e.to_string()));
    set("content-type", "application/json")?;
    match provider {
        Provider::Anthropic => {
            set("x-api-key", key)?;
            set("anthropic-version", ANTHROPIC_VERSION)?;
        }
        Provider::OpenAi | Provider::OpenRouter => set("authorization", &format!("Bearer {key}"))?,
    }
    if provider == Provider::OpenRouter {
        set("x-title", "Dex Edge")?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(wasm_bindgen::JsValue::from_str(body)));
    let req = Request::new_with_init(&format!("{base}{path}"), &init).map_err(|e| Failure::Connect(e.to_string()))?;
    let fetch = Fetch::Request(req);
    let send = Box::pin(fetch.send());
    let deadline = Box::pin(worker::Delay::from(first_byte));
    let outcome = match select(send, deadline).await {
        Either::Left((r, _)) => r.map_err(|e| Failure::Connect(e.to_string())),
        Either::Right(_) => Err(Failure::Timeout),
    };
    outcome
}
