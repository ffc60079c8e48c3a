//! API keys and other bearer secrets: format, keyed hash, display parts.
//!
//! Keys carry at least 128 random bits, so a keyed SHA-256 (HMAC with a
//! server-side pepper) is enough to store them: a slow hash buys nothing
//! against a search space that large, and the pepper means a leaked table
//! alone cannot even confirm a guess.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const API_KEY_PREFIX: &str = "pk_live_";
/// Random bytes in a key: 24 bytes = 192 bits.
pub const API_KEY_RANDOM_BYTES: usize = 24;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 of the bytes (big-endian), zero-padded to a fixed width so every key
/// has the same length.
pub fn base62(bytes: &[u8]) -> String {
    // ceil(len * 8 / log2(62)) digits hold any value of `len` bytes.
    let width = (bytes.len() * 8 * 1000).div_ceil(5954);
    let mut digits = vec![0u8; width];
    for &b in bytes {
        let mut carry = b as u32;
        for d in digits.iter_mut().rev() {
            let v = (*d as u32) * 256 + carry;
            *d = (v % 62) as u8;
            carry = v / 62;
        }
    }
    digits.iter().map(|&d| BASE62[d as usize] as char).collect()
}

/// A freshly minted key: the full secret (shown once) and what we store.
#[derive(Debug, Clone)]
pub struct MintedKey {
    pub full_key: String,
    pub display: KeyDisplay,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDisplay {
    /// `pk_live_` and the first four random characters.
    pub prefix: String,
    pub last4: String,
}

pub fn mint_api_key(random: &[u8; API_KEY_RANDOM_BYTES]) -> MintedKey {
    let full_key = format!("{API_KEY_PREFIX}{}", base62(random));
    let display = display_parts(&full_key);
    MintedKey { full_key, display }
}

pub fn display_parts(full_key: &str) -> KeyDisplay {
    let prefix: String = full_key.chars().take(API_KEY_PREFIX.len() + 4).collect();
    let n = full_key.chars().count();
    let last4: String = full_key.chars().skip(n.saturating_sub(4)).collect();
    KeyDisplay { prefix, last4 }
}

/// Whether a presented string can be one of our API keys at all. Checked
/// before any lookup so garbage never reaches storage.
pub fn looks_like_api_key(candidate: &str) -> bool {
    let body = match candidate.strip_prefix(API_KEY_PREFIX) {
        Some(b) => b,
        None => return false,
    };
    (30..=64).contains(&body.len()) && body.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// Hex HMAC-SHA256 of a secret under the pepper; what `api_keys.key_hash` holds.
pub fn keyed_hash(pepper: &[u8], secret: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(pepper) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    mac.update(secret.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cold]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` only fails for fixed-size-key MACs; SHA-256 HMAC
    // takes any length. Kept as a named function so the impossibility is stated once.
    panic!("HMAC-SHA256 rejected a key length, which it never does")
}

/// Constant-time equality of two secrets or digests.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Random identifiers with a readable type prefix: `acct_…`, `usr_…`, `key_…`.
pub fn prefixed_id(prefix: &str, random: &[u8; 16]) -> String {
    format!("{prefix}_{}", base62(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_key_has_prefix_and_fixed_length() {
        let k = mint_api_key(&[0u8; 24]);
        assert!(k.full_key.starts_with("pk_live_"));
        let k2 = mint_api_key(&[255u8; 24]);
        assert_eq!(k.full_key.len(), k2.full_key.len());
        assert!(looks_like_api_key(&k.full_key));
        assert!(looks_like_api_key(&k2.full_key));
        assert_eq!(k2.display.prefix, k2.full_key[..12]);
        assert_eq!(k2.display.last4, k2.full_key[k2.full_key.len() - 4..]);
    }

    #[test]
    fn distinct_randomness_gives_distinct_keys() {
        let mut r = [7u8; 24];
        let a = mint_api_key(&r).full_key;
        r[23] = 8;
        let b = mint_api_key(&r).full_key;
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_non_keys() {
        assert!(!looks_like_api_key("sk-abc"));
        assert!(!looks_like_api_key("pk_live_short"));
        assert!(!looks_like_api_key("pk_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"));
        assert!(!looks_like_api_key(""));
    }

    #[test]
    fn keyed_hash_depends_on_pepper() {
        let a = keyed_hash(b"pepper-one", "pk_live_x");
        let b = keyed_hash(b"pepper-two", "pk_live_x");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(a, keyed_hash(b"pepper-one", "pk_live_x"));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn base62_width_covers_max_value() {
        assert_eq!(base62(&[255u8; 16]).len(), 22);
        assert_eq!(base62(&[0u8; 16]), "0".repeat(22));
    }
}
