//! OpenRouter's key API: per-account upstream keys minted with a spending
//! limit (`POST /v1/keys`), so one account's usage can never exceed what it
//! paid for, even upstream.

use std::time::Duration;

use serde_json::json;
use worker::{Headers, Method};

use super::http::call_json;

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct MintedUpstreamKey {
    pub key: String,
    pub hash: String,
}

fn headers(provisioning_key: &str) -> Result<Headers, String> {
    let h = Headers::new();
    h.set("authorization", &format!("Bearer {provisioning_key}")).map_err(|e| e.to_string())?;
    h.set("content-type", "application/json").map_err(|e| e.to_string())?;
    Ok(h)
}

pub async fn mint(base: &str, provisioning_key: &str, name: &str, limit_usd: Option<f64>) -> Result<MintedUpstreamKey, String> {
    let body = json!({"name": name, "limit": limit_usd, "include_byok_in_limit": true}).to_string();
    let (status, v) = call_json(Method::Post, &format!("{base}/v1/keys"), headers(provisioning_key)?, Some(body), TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("OpenRouter key API answered {status}"));
    }
    match (v["key"].as_str(), v["data"]["hash"].as_str()) {
        (Some(k), Some(h)) => Ok(MintedUpstreamKey { key: k.to_string(), hash: h.to_string() }),
        _ => Err("OpenRouter key API answer lacks key or hash".into()),
    }
}

/// Deletes a key minted by a request that lost the race to store its own.
pub async fn delete(base: &str, provisioning_key: &str, hash: &str) {
    if let Ok(h) = headers(provisioning_key) {
        let _ = call_json(Method::Delete, &format!("{base}/v1/keys/{hash}"), h, None, TIMEOUT).await;
    }
}
