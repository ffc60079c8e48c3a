//! `LIMITER`: one per API key. The bucket lives in the object, so the limit
//! is exact however many isolates serve the key (no per-replica multiplication).
//! It is kept in memory: an object evicted after idling would refill to full
//! anyway.

use std::cell::RefCell;

use dex_shared::ratelimit::{BucketRule, TokenBucket};
use serde::Deserialize;
use serde_json::json;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result, State};

use super::reply;

#[durable_object]
pub struct Limiter {
    bucket: RefCell<Option<TokenBucket>>,
}

#[derive(Deserialize)]
struct TakeRequest {
    rule: BucketRule,
    cost: u32,
    now_ms: i64,
}

impl DurableObject for Limiter {
    fn new(_state: State, _env: Env) -> Self {
        Self { bucket: RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.method() != Method::Post || req.path() != "/take" {
            return reply(404, &json!({"error": "unknown limiter operation"}));
        }
        let Ok(take) = req.json::<TakeRequest>().await else {
            return reply(400, &json!({"error": "bad_request"}));
        };
        if !take.rule.is_valid() {
            return reply(400, &json!({"error": "invalid_rule"}));
        }
        let mut slot = self.bucket.borrow_mut();
        let bucket = slot.get_or_insert_with(|| TokenBucket::full(take.rule, take.now_ms));
        let decision = bucket.take(take.rule, take.now_ms, take.cost);
        reply(200, &serde_json::to_value(decision)?)
    }
}
