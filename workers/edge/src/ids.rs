//! Randomness and identifiers. `getrandom` reaches `crypto.getRandomValues`.

use dex_shared::keys::{mint_api_key, prefixed_id, MintedKey, API_KEY_RANDOM_BYTES};

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    if getrandom::getrandom(&mut buf).is_err() {
        // The platform CSPRNG is always present in workerd; if it ever is not,
        // refusing to continue beats minting predictable secrets.
        panic!("crypto.getRandomValues is unavailable");
    }
    buf
}

pub fn new_id(prefix: &str) -> String {
    prefixed_id(prefix, &random_bytes::<16>())
}

pub fn new_api_key() -> MintedKey {
    mint_api_key(&random_bytes::<API_KEY_RANDOM_BYTES>())
}

/// A caller's own `X-Request-ID` is kept when it is short and plain, so
/// clients can trace a request across systems; anything else is replaced.
pub fn request_id(incoming: Option<String>) -> String {
    match incoming {
        Some(id) if (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => id,
        _ => new_id("req"),
    }
}
