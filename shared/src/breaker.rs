//! Per-upstream circuit breaker: after `threshold` consecutive failures the
//! upstream is skipped for `cooldown_ms`; then one trial request is let
//! through (half-open) and its outcome closes or re-opens the circuit.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Breaker {
    consecutive_failures: u32,
    open_until_ms: i64,
    half_open_trial: bool,
}

pub const THRESHOLD: u32 = 5;
pub const COOLDOWN_MS: i64 = 30_000;

impl Breaker {
    /// Whether a request may go to this upstream now.
    pub fn allows(&mut self, now_ms: i64) -> bool {
        if self.consecutive_failures < THRESHOLD {
            return true;
        }
        if now_ms < self.open_until_ms || self.half_open_trial {
            return false;
        }
        // Cool-down over: one trial.
        self.half_open_trial = true;
        true
    }

    pub fn success(&mut self) {
        *self = Breaker::default();
    }

    pub fn failure(&mut self, now_ms: i64) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.half_open_trial = false;
        if self.consecutive_failures >= THRESHOLD {
            self.open_until_ms = now_ms + COOLDOWN_MS;
        }
    }

    pub fn is_open(&self, now_ms: i64) -> bool {
        self.consecutive_failures >= THRESHOLD && now_ms < self.open_until_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_half_opens_after_cooldown() {
        let mut b = Breaker::default();
        for _ in 0..THRESHOLD - 1 {
            b.failure(0);
            assert!(b.allows(0));
        }
        b.failure(0);
        assert!(!b.allows(1));
        assert!(b.is_open(1));
        // After the cool-down one trial goes through, a second waits for it.
        assert!(b.allows(COOLDOWN_MS));
        assert!(!b.allows(COOLDOWN_MS));
        b.failure(COOLDOWN_MS);
        assert!(!b.allows(COOLDOWN_MS + 1));
        assert!(b.allows(2 * COOLDOWN_MS + 1));
        b.success();
        assert!(b.allows(2 * COOLDOWN_MS + 1));
        assert!(!b.is_open(2 * COOLDOWN_MS + 1));
    }

    #[test]
    fn success_resets_the_count() {
        let mut b = Breaker::default();
        for _ in 0..THRESHOLD - 1 {
            b.failure(0);
        }
        b.success();
        b.failure(0);
        assert!(b.allows(0));
    }
}
