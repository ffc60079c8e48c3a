//! The Worker's edge: request context, JSON bodies within limits, and
//! responses — every error in the OpenAI shape.

use dex_shared::error::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, Headers, Request, Response};

use crate::config::Config;
use crate::logging;

pub type HandlerResult = Result<Response, ApiError>;

/// What every handler gets: the environment and this request's identity.
pub struct Ctx {
    pub env: Env,
    pub request_id: String,
    /// For work that must finish after the response (usage records).
    pub worker_ctx: worker::Context,
}

impl Ctx {
    pub fn config(&self) -> Config<'_> {
        Config::new(&self.env)
    }

    pub fn now_ms(&self) -> i64 {
        logging::now_ms()
    }

    pub fn db(&self) -> Result<worker::D1Database, ApiError> {
        self.env.d1("DB").or_internal("binding DB")
    }
}

/// Turns a platform error into a generic 500, logging the detail (redacted).
pub trait OrInternal<T> {
    fn or_internal(self, what: &str) -> Result<T, ApiError>;
}

impl<T, E: std::fmt::Display> OrInternal<T> for Result<T, E> {
    fn or_internal(self, what: &str) -> Result<T, ApiError> {
        self.map_err(|e| {
            logging::emit(logging::error("internal_error").field("what", what).field("detail", e.to_string()));
            ApiError::internal()
        })
    }
}

pub fn json_response<T: Serialize>(status: u16, body: &T) -> HandlerResult {
    Response::from_json(body).or_internal("serialise response").map(|r| r.with_status(status))
}

/// The error response. Built without fallible steps that could lose it: if
/// even this fails, a plain 500 stands in.
pub fn error_response(err: &ApiError) -> Response {
    let body = err.body().to_string();
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    if let Some(secs) = err.retry_after_secs {
        let _ = headers.set("retry-after", &secs.to_string());
    }
    match Response::ok(body) {
        Ok(r) => r.with_status(err.status).with_headers(headers),
        Err(_) => Response::empty().map(|r| r.with_status(500)).unwrap_or_else(|_| Response::builder().with_status(500).empty()),
    }
}

/// An error for Anthropic-dialect clients (`/v1/messages`).
pub fn anthropic_error_response(err: &ApiError) -> Response {
    let resp = error_response(err);
    let status = resp.status_code();
    let headers = resp.headers().clone();
    match Response::ok(err.anthropic_body().to_string()) {
        Ok(r) => r.with_status(status).with_headers(headers),
        Err(_) => resp,
    }
}

/// Reads the body within the size limit. `Content-Length` is checked first so
/// an oversized upload is refused before it is read.
pub async fn read_body(req: &mut Request, limit: u64) -> Result<Vec<u8>, ApiError> {
    if let Ok(Some(len)) = req.headers().get("content-length") {
        if len.trim().parse::<u64>().map(|n| n > limit).unwrap_or(false) {
            return Err(ApiError::payload_too_large(limit));
        }
    }
    let bytes = req.bytes().await.map_err(|_| ApiError::bad_request("unreadable_body", "The request body could not be read."))?;
    if bytes.len() as u64 > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    Ok(bytes)
}

/// Parses a JSON body into `T`. Malformed JSON and wrong shapes are 400s
/// naming the problem, never 500s.
pub async fn read_json<T: DeserializeOwned>(ctx: &Ctx, req: &mut Request) -> Result<T, ApiError> {
    let bytes = read_body(req, ctx.config().max_body_bytes()).await?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("missing_body", "A JSON request body is required."));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(ApiError::invalid_json)?;
    serde_json::from_value(value).map_err(|e| ApiError::bad_request("invalid_request", format!("The request body is not valid: {e}")))
}

/// Like [`read_json`], for bodies that may be left out entirely: an empty
/// body is `T::default()`; malformed or wrongly shaped JSON is still a 400.
pub async fn read_json_or_default<T: DeserializeOwned + Default>(ctx: &Ctx, req: &mut Request) -> Result<T, ApiError> {
    match read_json(ctx, req).await {
        Err(e) if e.code == "missing_body" => Ok(T::default()),
        other => other,
    }
}

pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// The bearer credential from `Authorization: Bearer …` or `x-api-key`.
pub fn bearer(req: &Request) -> Option<String> {
    if let Some(v) = header(req, "authorization") {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim().to_string());
        }
        return None;
    }
    header(req, "x-api-key").map(|k| k.trim().to_string()).filter(|k| !k.is_empty())
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    let url = req.url().ok()?;
    let found = url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    found
}

/// `?limit=` within 1..=`max`, `default` when absent; a 400 otherwise.
pub fn limit_param(req: &Request, default: u32, max: u32) -> Result<u32, ApiError> {
    match query_param(req, "limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::bad_request("invalid_limit", format!("limit must be 1 to {max}"))),
    }
}
