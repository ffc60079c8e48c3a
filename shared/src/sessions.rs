//! Refresh sessions and device codes: token formats and the rules that decide
//! what a presented refresh token or device poll gets.

use crate::keys::base62;
use crate::time::{DAY_MS, MINUTE_MS};

pub const REFRESH_TTL_MS: i64 = 30 * DAY_MS;
pub const REFRESH_PREFIX: &str = "rt_";
pub const DEVICE_CODE_TTL_MS: i64 = 15 * MINUTE_MS;
pub const DEVICE_POLL_INTERVAL_SECS: i64 = 5;

/// `rt_` + 256 random bits.
pub fn refresh_token(random: &[u8; 32]) -> String {
    format!("{REFRESH_PREFIX}{}", base62(random))
}

pub fn looks_like_refresh_token(s: &str) -> bool {
    s.strip_prefix(REFRESH_PREFIX).is_some_and(|b| (40..=48).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// What the stored session says about a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshVerdict {
    /// Good: mark used, issue the next token in the same family.
    Rotate,
    /// Already used once: someone holds a copy. Revoke the whole family.
    Reused,
    Revoked,
    Expired,
}

pub fn judge_refresh(s: SessionState, now_ms: i64) -> RefreshVerdict {
    if s.revoked_at.is_some() {
        RefreshVerdict::Revoked
    } else if s.used_at.is_some() {
        RefreshVerdict::Reused
    } else if now_ms >= s.expires_at {
        RefreshVerdict::Expired
    } else {
        RefreshVerdict::Rotate
    }
}

/// Letters a person can read aloud and type without confusion (no vowels, so
/// no words; no 0/O or 1/I).
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// `XXXX-XXXX` from 8 random bytes.
pub fn user_code(random: &[u8; 8]) -> String {
    let chars: String = random.iter().map(|b| USER_CODE_ALPHABET[(*b as usize) % USER_CODE_ALPHABET.len()] as char).collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// Accepts what a person types: any case, with or without the dash or spaces.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let cleaned: String = input.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect();
    (cleaned.len() == 8 && cleaned.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then(|| format!("{}-{}", &cleaned[..4], &cleaned[4..]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePoll {
    Pending,
    /// Polled sooner than the interval allows (RFC 8628 `slow_down`).
    SlowDown,
    Expired,
    Denied,
    /// Approved: mint and deliver the key now.
    Deliver,
    /// Already delivered once.
    Consumed,
}

pub fn judge_device_poll(status: &str, expires_at: i64, last_polled_at: Option<i64>, interval_secs: i64, now_ms: i64) -> DevicePoll {
    match status {
        "consumed" => DevicePoll::Consumed,
        "denied" => DevicePoll::Denied,
        _ if now_ms >= expires_at => DevicePoll::Expired,
        // Allow a little jitter: clients sleep `interval` between polls.
        _ if last_polled_at.is_some_and(|t| now_ms - t < interval_secs * 1000 - 500) => DevicePoll::SlowDown,
        "approved" => DevicePoll::Deliver,
        _ => DevicePoll::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_token_format() {
        let t = refresh_token(&[9u8; 32]);
        assert!(looks_like_refresh_token(&t), "{t}");
        assert!(!looks_like_refresh_token("rt_short"));
        assert!(!looks_like_refresh_token("pk_live_abc"));
    }

    #[test]
    fn refresh_verdicts() {
        let live = SessionState { expires_at: 100, used_at: None, revoked_at: None };
        assert_eq!(judge_refresh(live, 50), RefreshVerdict::Rotate);
        assert_eq!(judge_refresh(live, 100), RefreshVerdict::Expired);
        assert_eq!(judge_refresh(SessionState { used_at: Some(10), ..live }, 50), RefreshVerdict::Reused);
        assert_eq!(judge_refresh(SessionState { used_at: Some(10), revoked_at: Some(20), ..live }, 50), RefreshVerdict::Revoked);
    }

    #[test]
    fn user_codes_round_trip_through_typing() {
        let c = user_code(&[0, 1, 2, 3, 4, 5, 6, 200]);
        assert_eq!(c.len(), 9);
        assert_eq!(normalize_user_code(&c.to_lowercase().replace('-', " ")), Some(c.clone()));
        assert_eq!(normalize_user_code("AAAA-AAAA"), None, "vowels are never issued");
        assert_eq!(normalize_user_code("BCD"), None);
    }

    #[test]
    fn device_poll_rules() {
        let exp = 1_000_000;
        assert_eq!(judge_device_poll("pending", exp, None, 5, 0), DevicePoll::Pending);
        assert_eq!(judge_device_poll("pending", exp, Some(0), 5, 1_000), DevicePoll::SlowDown);
        assert_eq!(judge_device_poll("pending", exp, Some(0), 5, 5_000), DevicePoll::Pending);
        assert_eq!(judge_device_poll("approved", exp, Some(0), 5, 5_000), DevicePoll::Deliver);
        assert_eq!(judge_device_poll("approved", exp, None, 5, exp), DevicePoll::Expired);
        assert_eq!(judge_device_poll("denied", exp, None, 5, 0), DevicePoll::Denied);
        assert_eq!(judge_device_poll("consumed", exp, None, 5, 0), DevicePoll::Consumed);
    }
}
