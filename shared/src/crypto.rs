//! Secrets at rest: AES-256-GCM with a random 96-bit nonce, stored as
//! `v1.<base64 nonce>.<base64 ciphertext+tag>`. The account id is bound as
//! associated data, so a ciphertext copied to another account's row does not
//! decrypt there.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::{engine::general_purpose::STANDARD_NO_PAD as B64, Engine};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoError(pub &'static str);

/// Parses `ENCRYPTION_KEY`: 32 bytes, base64.
pub fn parse_key(b64: &str) -> Result<[u8; 32], CryptoError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .or_else(|_| B64.decode(b64.trim()))
        .map_err(|_| CryptoError("ENCRYPTION_KEY is not base64"))?;
    raw.try_into().map_err(|_| CryptoError("ENCRYPTION_KEY must be 32 bytes"))
}

pub fn seal(key: &[u8; 32], nonce: &[u8; 12], plaintext: &[u8], aad: &[u8]) -> Result<String, CryptoError> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let ct = cipher.encrypt(Nonce::from_slice(nonce), Payload { msg: plaintext, aad }).map_err(|_| CryptoError("encryption failed"))?;
    Ok(format!("v1.{}.{}", B64.encode(nonce), B64.encode(ct)))
}

pub fn open(key: &[u8; 32], sealed: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut parts = sealed.split('.');
    let (Some("v1"), Some(n), Some(c), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(CryptoError("not a sealed value"));
    };
    let nonce = B64.decode(n).map_err(|_| CryptoError("bad nonce"))?;
    let ct = B64.decode(c).map_err(|_| CryptoError("bad ciphertext"))?;
    if nonce.len() != 12 {
        return Err(CryptoError("bad nonce"));
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    cipher.decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad }).map_err(|_| CryptoError("decryption failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: [u8; 32] = [7u8; 32];

    #[test]
    fn round_trip_and_binding() {
        let s = seal(&K, &[1u8; 12], b"sk-or-v1-secret", b"acct_a").unwrap_or_default();
        assert!(s.starts_with("v1."));
        assert!(!s.contains("secret"));
        assert_eq!(open(&K, &s, b"acct_a").ok().as_deref(), Some(&b"sk-or-v1-secret"[..]));
        assert!(open(&K, &s, b"acct_b").is_err(), "bound to its account");
        assert!(open(&[8u8; 32], &s, b"acct_a").is_err(), "wrong key");
        let mut tampered = s.clone();
        tampered.pop();
        tampered.push('A');
        assert!(open(&K, &tampered, b"acct_a").is_err() || tampered == s);
    }

    #[test]
    fn parses_keys() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert_eq!(parse_key(&b64), Ok([9u8; 32]));
        assert!(parse_key("short").is_err());
        assert!(parse_key("!!!").is_err());
    }
}
