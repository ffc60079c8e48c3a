//! Password hashing: PBKDF2-HMAC-SHA256 with a per-user salt.
//!
//! 100,000 iterations is the ceiling WebCrypto allows in Workers; the stored
//! form names the algorithm and count so the count can rise later without
//! breaking existing hashes.

use base64::{engine::general_purpose::STANDARD_NO_PAD as B64, Engine};
use sha2::Sha256;

use crate::keys::constant_time_eq;

pub const ITERATIONS: u32 = 100_000;
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub fn hash_password(password: &str, salt: &[u8; 16], iterations: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    format!("pbkdf2-sha256${iterations}${}${}", B64.encode(salt), B64.encode(out))
}

/// A well-formed hash of no one's password. Sign-in verifies against it when
/// the account does not exist, so a miss costs the same time as a wrong
/// password and timing does not reveal which e-mails are registered.
pub const DECOY_HASH: &str = "pbkdf2-sha256$100000$AAAAAAAAAAAAAAAAAAAAAA$hQ9V3fXkJc2m8y1mS2yP8h1mNqgW7V8dV6j3wqK1w2s";

fn parse(stored: &str) -> Option<(u32, Vec<u8>, Vec<u8>)> {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let (Ok(iterations), Ok(salt), Ok(expected)) = (iter.parse::<u32>(), B64.decode(salt), B64.decode(hash)) else {
        return None;
    };
    (iterations > 0 && expected.len() == 32).then_some((iterations, salt, expected))
}

/// Checks a password against a stored hash in constant time. A malformed
/// stored hash verifies nothing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let Some((iterations, salt, expected)) = parse(stored) else {
        return false;
    };
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut out);
    constant_time_eq(&out, &expected)
}

/// Why a new password is refused, if it is.
pub fn password_problem(password: &str) -> Option<&'static str> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        Some("password must be at least 10 characters")
    } else if password.len() > MAX_PASSWORD_BYTES {
        Some("password must be at most 1024 bytes")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_password() {
        let h = hash_password("correct horse battery", &[3u8; 16], 1_000);
        assert!(h.starts_with("pbkdf2-sha256$1000$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterz", &h));
    }

    #[test]
    fn rfc_vector_matches() {
        // PBKDF2-HMAC-SHA256, P="password", S="salt", c=1, dkLen=32 (RFC 7914 §11 / common test vector).
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"password", b"salt", 1, &mut out);
        assert_eq!(hex::encode(out), "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b");
    }

    #[test]
    fn malformed_hash_verifies_nothing() {
        for bad in ["", "plain", "pbkdf2-sha256$x$y$z", "pbkdf2-sha256$0$AAAA$AAAA", "bcrypt$10$a$b"] {
            assert!(!verify_password("anything", bad), "{bad}");
        }
    }

    #[test]
    fn decoy_is_well_formed_and_matches_nothing() {
        assert_eq!(parse(DECOY_HASH).map(|(i, s, h)| (i, s.len(), h.len())), Some((ITERATIONS, 16, 32)));
        assert!(!verify_password("", DECOY_HASH));
    }

    #[test]
    fn password_rules() {
        assert!(password_problem("short").is_some());
        assert!(password_problem("long enough pw").is_none());
    }
}
