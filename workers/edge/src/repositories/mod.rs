//! One module per table group; each owns its SQL. Handlers never write SQL.

pub mod accounts;
pub mod api_keys;
pub mod billing;
pub mod device_codes;
pub mod jobs;
pub mod sessions;
pub mod usage;
pub mod users;
pub mod webhook_events;

use wasm_bindgen::JsValue;
use worker::D1Result;

pub fn int(v: i64) -> JsValue {
    // D1 takes JS numbers; every value we bind (ms times, micro-USD, counts)
    // stays far below 2^53.
    JsValue::from_f64(v as f64)
}

pub fn text(v: &str) -> JsValue {
    JsValue::from_str(v)
}

pub fn opt_text(v: Option<&str>) -> JsValue {
    v.map(JsValue::from_str).unwrap_or(JsValue::NULL)
}

/// Rows changed by a write.
pub fn changes(result: &D1Result) -> u64 {
    result.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0) as u64
}

/// Whether a D1 error is a UNIQUE constraint violation.
pub fn is_unique_violation(err: &worker::Error) -> bool {
    err.to_string().contains("UNIQUE constraint failed")
}
