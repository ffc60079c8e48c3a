//! Token-bucket arithmetic for the per-key limiter (`LIMITER` Durable Object).
//!
//! Integer milli-tokens and milliseconds only, so refill never drifts. The
//! Durable Object holds one bucket per key and applies [`TokenBucket::take`]
//! serially, which is what makes the limit exact however many Worker
//! isolates serve the key.

use serde::{Deserialize, Serialize};

const MILLI: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRule {
    /// Sustained rate: tokens added per minute.
    pub per_minute: u32,
    /// Bucket size: how many requests may arrive at once.
    pub burst: u32,
}

impl BucketRule {
    /// 60 requests per minute, burst 10 (the Dexto gateway's default).
    pub const DEFAULT_REQUESTS: BucketRule = BucketRule { per_minute: 60, burst: 10 };

    pub fn is_valid(&self) -> bool {
        self.per_minute > 0 && self.burst > 0
    }
}

/// The limits of a key by its account's plan: requests per minute and model
/// tokens per minute (input estimate + `max_tokens`, settled to the real count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    pub requests: BucketRule,
    pub tokens: BucketRule,
}

pub fn plan_limits(plan: &str) -> PlanLimits {
    match plan {
        "pro" | "dominance" => PlanLimits {
            requests: BucketRule { per_minute: 600, burst: 60 },
            tokens: BucketRule { per_minute: 2_000_000, burst: 2_000_000 },
        },
        "basic" | "velocity" => {
            PlanLimits { requests: BucketRule { per_minute: 120, burst: 20 }, tokens: BucketRule { per_minute: 400_000, burst: 400_000 } }
        }
        _ => PlanLimits { requests: BucketRule::DEFAULT_REQUESTS, tokens: BucketRule { per_minute: 200_000, burst: 200_000 } },
    }
}

/// How many tokens an isolate takes from a bucket at once: a sixteenth of
/// the burst, so a small limit (a burst of 15 or less) is exact, one token
/// per call, and a large one costs a round trip per batch. At most one batch
/// per isolate is ever out, and it lapses within [`LEASE_LIFETIME_MS`].
pub fn lease_size(rule: BucketRule) -> u32 {
    (rule.burst / 16).clamp(1, 64)
}

/// A batch taken from a bucket is spent within this, or dropped.
pub const LEASE_LIFETIME_MS: i64 = 1_000;

/// The service-wide ceiling (requests per minute over all keys) is split
/// over this many `LIMITER` objects so no single object is hot.
pub const GLOBAL_SHARDS: u32 = 16;
pub const GLOBAL_PER_MINUTE: u32 = 10_000;

/// One shard's share of the global ceiling.
pub fn global_shard_rule(total_per_minute: u32) -> BucketRule {
    let per = (total_per_minute / GLOBAL_SHARDS).max(1);
    BucketRule { per_minute: per, burst: (per / 6).max(1) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    /// Current level in milli-tokens.
    pub level_milli: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Whole tokens left after this decision.
    pub remaining: u32,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: i64,
    /// When refused: milliseconds until `cost` tokens are available.
    pub retry_after_ms: i64,
}

impl Decision {
    /// `Retry-After` in whole seconds, never 0 for a refusal.
    pub fn retry_after_secs(&self) -> u64 {
        ((self.retry_after_ms.max(1) + 999) / 1000) as u64
    }
}

impl TokenBucket {
    /// Returns tokens taken for more than was used (a reservation settled
    /// below its estimate); never above the bucket's size.
    pub fn give_back(&mut self, rule: BucketRule, now_ms: i64, amount: u32) {
        self.refill(rule, now_ms);
        let cap = rule.burst as i64 * MILLI;
        self.level_milli = (self.level_milli + amount as i64 * MILLI).min(cap);
    }

    pub fn full(rule: BucketRule, now_ms: i64) -> Self {
        Self { level_milli: rule.burst as i64 * MILLI, updated_ms: now_ms }
    }

    fn refill(&mut self, rule: BucketRule, now_ms: i64) {
        let elapsed = (now_ms - self.updated_ms).max(0);
        // per_minute tokens per 60_000 ms = per_minute milli-tokens per 60 ms.
        let added = elapsed.saturating_mul(rule.per_minute as i64) / 60;
        let cap = rule.burst as i64 * MILLI;
        self.level_milli = (self.level_milli.saturating_add(added)).min(cap);
        // Clocks can step backwards between isolates; never move time back.
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    fn ms_to_gain(rule: BucketRule, milli: i64) -> i64 {
        if milli <= 0 {
            return 0;
        }
        // Inverse of refill, rounded up so a retry at that time succeeds.
        (milli * 60 + rule.per_minute as i64 - 1) / rule.per_minute as i64
    }

    /// Takes between `min` and `want` tokens (as many as there are), or none
    /// if there are fewer than `min`: how an isolate leases a batch. Returns
    /// the tokens taken and the decision for `min`.
    pub fn take_up_to(&mut self, rule: BucketRule, now_ms: i64, min: u32, want: u32) -> (u32, Decision) {
        self.refill(rule, now_ms);
        let whole = (self.level_milli / MILLI).max(0) as u32;
        let granted = if whole >= min { want.max(min).min(whole) } else { 0 };
        let d = self.take(rule, now_ms, if granted > 0 { granted } else { min });
        (if d.allowed { granted } else { 0 }, d)
    }

    /// Takes `cost` tokens if there are enough; otherwise leaves the bucket as it is.
    pub fn take(&mut self, rule: BucketRule, now_ms: i64, cost: u32) -> Decision {
        self.refill(rule, now_ms);
        let cost_milli = cost as i64 * MILLI;
        let cap = rule.burst as i64 * MILLI;
        let allowed = cost_milli <= self.level_milli;
        if allowed {
            self.level_milli -= cost_milli;
        }
        Decision {
            allowed,
            limit: rule.per_minute,
            remaining: (self.level_milli / MILLI).max(0) as u32,
            reset_ms: Self::ms_to_gain(rule, cap - self.level_milli),
            retry_after_ms: if allowed { 0 } else { Self::ms_to_gain(rule, cost_milli - self.level_milli) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: BucketRule = BucketRule::DEFAULT_REQUESTS;

    #[test]
    fn take_up_to_grants_what_there_is_down_to_the_minimum() {
        let mut b = TokenBucket::full(RULE, 0);
        assert_eq!(b.take_up_to(RULE, 0, 1, 4).0, 4);
        assert_eq!(b.take_up_to(RULE, 0, 1, 100).0, 6, "the rest of the burst");
        let (granted, d) = b.take_up_to(RULE, 0, 1, 4);
        assert_eq!(granted, 0);
        assert!(!d.allowed && d.retry_after_ms > 0);
        assert_eq!(lease_size(RULE), 1, "a small limit is taken one at a time");
        assert_eq!(lease_size(BucketRule { per_minute: 1_000_000, burst: 1_000_000 }), 64);
    }

    #[test]
    fn burst_then_refuse_then_refill() {
        let mut b = TokenBucket::full(RULE, 0);
        for i in 0..10 {
            let d = b.take(RULE, 0, 1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 9 - i);
        }
        let refused = b.take(RULE, 0, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_ms, 1_000);
        assert_eq!(refused.retry_after_secs(), 1);
        // One second later exactly one more fits.
        assert!(b.take(RULE, 1_000, 1).allowed);
        assert!(!b.take(RULE, 1_000, 1).allowed);
    }

    #[test]
    fn sustained_rate_is_per_minute() {
        let mut b = TokenBucket::full(RULE, 0);
        let mut allowed = 0;
        // One request every 100 ms for a minute: burst 10 plus 60 refilled.
        for t in (0..60_000).step_by(100) {
            if b.take(RULE, t, 1).allowed {
                allowed += 1;
            }
        }
        assert!((69..=70).contains(&allowed), "{allowed}");
    }

    #[test]
    fn never_exceeds_burst_after_idle() {
        let mut b = TokenBucket::full(RULE, 0);
        b.take(RULE, 0, 5);
        let d = b.take(RULE, 3_600_000, 0);
        assert_eq!(d.remaining, 10);
        assert_eq!(d.reset_ms, 0);
    }

    #[test]
    fn clock_going_backwards_adds_nothing() {
        let mut b = TokenBucket::full(RULE, 10_000);
        for _ in 0..10 {
            b.take(RULE, 10_000, 1);
        }
        assert!(!b.take(RULE, 5_000, 1).allowed);
    }

    #[test]
    fn give_back_refunds_up_to_the_size() {
        let rule = BucketRule { per_minute: 60, burst: 100 };
        let mut b = TokenBucket::full(rule, 0);
        assert!(b.take(rule, 0, 80).allowed);
        b.give_back(rule, 0, 50);
        assert_eq!(b.take(rule, 0, 0).remaining, 70);
        b.give_back(rule, 0, 500);
        assert_eq!(b.take(rule, 0, 0).remaining, 100);
    }

    #[test]
    fn plans_and_shards() {
        assert_eq!(plan_limits("prepaid").requests, BucketRule::DEFAULT_REQUESTS);
        assert!(plan_limits("pro").requests.per_minute > plan_limits("basic").requests.per_minute);
        let rule = global_shard_rule(GLOBAL_PER_MINUTE);
        assert_eq!(rule.per_minute * GLOBAL_SHARDS, 10_000);
    }

    #[test]
    fn refused_take_costs_nothing() {
        let mut b = TokenBucket::full(RULE, 0);
        let d = b.take(RULE, 0, 11);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 10);
    }
}
