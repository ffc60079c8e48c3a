//! `LIMITER`: token buckets. One object per API key (its request and token
//! buckets), one per sign-in identity, and `GLOBAL_SHARDS` objects sharing
//! the service-wide ceiling. The buckets live in the object, so a limit is
//! exact however many isolates serve the key (no per-replica
//! multiplication). They are kept in memory: an object evicted after idling
//! would have refilled to full anyway.

use std::cell::RefCell;
use std::collections::HashMap;

use dex_shared::ratelimit::{BucketRule, Decision, TokenBucket};
use serde::Deserialize;
use serde_json::json;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result, State};

use super::reply;

#[durable_object]
pub struct Limiter {
    buckets: RefCell<HashMap<String, TokenBucket>>,
}

fn default_bucket() -> String {
    "requests".into()
}

/// Batches for an isolate: between `min` and `want` from each bucket, all
/// buckets or none.
#[derive(Deserialize)]
struct LeaseRequest {
    takes: Vec<LeaseTake>,
}

#[derive(Deserialize)]
struct LeaseTake {
    bucket: String,
    rule: BucketRule,
    min: u32,
    want: u32,
    now_ms: i64,
}

#[derive(Deserialize)]
struct BucketRequest {
    #[serde(default = "default_bucket")]
    bucket: String,
    rule: BucketRule,
    cost: u32,
    now_ms: i64,
}

impl DurableObject for Limiter {
    fn new(_state: State, _env: Env) -> Self {
        Self { buckets: RefCell::new(HashMap::new()) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        if req.method() == Method::Post && path == "/lease" {
            let Ok(lease) = req.json::<LeaseRequest>().await else {
                return reply(400, &json!({"error": "bad_request"}));
            };
            return self.lease(lease);
        }
        if req.method() != Method::Post || !(path == "/take" || path == "/give") {
            return reply(404, &json!({"error": "unknown limiter operation"}));
        }
        let Ok(op) = req.json::<BucketRequest>().await else {
            return reply(400, &json!({"error": "bad_request"}));
        };
        if !op.rule.is_valid() {
            return reply(400, &json!({"error": "invalid_rule"}));
        }
        let mut buckets = self.buckets.borrow_mut();
        let bucket = buckets.entry(op.bucket).or_insert_with(|| TokenBucket::full(op.rule, op.now_ms));
        if path == "/give" {
            bucket.give_back(op.rule, op.now_ms, op.cost);
            return reply(200, &serde_json::to_value(bucket.take(op.rule, op.now_ms, 0))?);
        }
        let decision = bucket.take(op.rule, op.now_ms, op.cost);
        reply(200, &serde_json::to_value(decision)?)
    }
}

impl Limiter {
    /// Each bucket's batch (`granted`, 0 for all when any bucket has fewer
    /// than `min`) and the decision for its `min`.
    fn lease(&self, lease: LeaseRequest) -> Result<Response> {
        if lease.takes.iter().any(|t| !t.rule.is_valid()) {
            return reply(400, &json!({"error": "invalid_rule"}));
        }
        let mut buckets = self.buckets.borrow_mut();
        let mut trial: Vec<(String, TokenBucket, u32, Decision)> = Vec::new();
        for t in &lease.takes {
            let mut b = *buckets.entry(t.bucket.clone()).or_insert_with(|| TokenBucket::full(t.rule, t.now_ms));
            let (granted, d) = b.take_up_to(t.rule, t.now_ms, t.min, t.want);
            trial.push((t.bucket.clone(), b, granted, d));
        }
        let all = trial.iter().all(|(_, _, _, d)| d.allowed);
        let mut out = Vec::new();
        for (name, b, granted, d) in trial {
            if all {
                buckets.insert(name, b);
            }
            out.push(json!({"granted": if all { granted } else { 0 }, "decision": d}));
        }
        reply(200, &json!(out))
    }
}
