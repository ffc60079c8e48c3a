//! Durable Objects (one module each) and the Worker-side call helper.
//!
//! Objects are reached with an internal JSON protocol over `stub.fetch`; the
//! host name in those URLs is never resolved.

pub mod limiter;
pub mod wallet;

use serde::de::DeserializeOwned;
use serde_json::Value;
use worker::{Env, Method, Request, RequestInit};

/// Calls an object by name; returns its status and JSON answer.
pub async fn call<T: DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> worker::Result<(u16, T)> {
    let stub = env.durable_object(binding)?.id_from_name(name)?.get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(b) = body {
        init.with_body(Some(wasm_bindgen::JsValue::from_str(&b.to_string())));
    }
    let req = Request::new_with_init(&format!("https://{}.internal{path}", binding.to_ascii_lowercase()), &init)?;
    let mut resp = stub.fetch_with_request(req).await?;
    let status = resp.status_code();
    Ok((status, resp.json::<T>().await?))
}

/// A JSON answer from inside an object.
pub fn reply(status: u16, body: &Value) -> worker::Result<worker::Response> {
    Ok(worker::Response::from_json(body)?.with_status(status))
}
