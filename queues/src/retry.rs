//! How long a failed job waits before its next attempt.

/// The longest wait between attempts.
pub const MAX_DELAY_SECS: u32 = 15 * 60;

/// Exponential backoff: `base`, `2·base`, `4·base`, … capped at 15 minutes.
/// `attempt` is the attempt that just failed, starting at 1.
pub fn delay_secs(attempt: u32, base_secs: u32) -> u32 {
    let shift = attempt.saturating_sub(1).min(20);
    base_secs.saturating_mul(1u32 << shift).min(MAX_DELAY_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps() {
        assert_eq!(delay_secs(1, 10), 10);
        assert_eq!(delay_secs(2, 10), 20);
        assert_eq!(delay_secs(4, 10), 80);
        assert_eq!(delay_secs(30, 10), MAX_DELAY_SECS);
        assert_eq!(delay_secs(0, 10), 10);
        assert_eq!(delay_secs(3, 0), 0);
    }
}
