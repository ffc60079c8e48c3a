//! Circuit breakers per upstream, per isolate. Isolates are many and short-
//! lived, so this is a local guard against hammering a dead upstream, not a
//! global switch; each isolate learns within `THRESHOLD` failures.

use std::cell::RefCell;
use std::collections::HashMap;

use dex_shared::breaker::Breaker;
use dex_shared::models::Provider;

thread_local! {
    static BREAKERS: RefCell<HashMap<&'static str, Breaker>> = RefCell::new(HashMap::new());
}

pub fn allows(p: Provider, now_ms: i64) -> bool {
    BREAKERS.with(|b| b.borrow_mut().entry(p.name()).or_default().allows(now_ms))
}

pub fn failure(p: Provider, now_ms: i64) {
    BREAKERS.with(|b| b.borrow_mut().entry(p.name()).or_default().failure(now_ms));
}

pub fn success(p: Provider) {
    BREAKERS.with(|b| b.borrow_mut().entry(p.name()).or_default().success());
}
