//! Session access tokens: HS256 JWTs with a key id, so the signing key can
//! rotate. Keys come from `JWT_SIGNING_KEYS` as `kid:secret[,kid:secret…]`;
//! the first signs, all listed verify, and a key removed from the list stops
//! verifying at once (the end of a rotation).

use chrono::{DateTime, Duration, Utc};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, Claims, Header, TimeOptions, Token, UntrustedToken};
use serde::{Deserialize, Serialize};

/// Access tokens live 15 minutes; refresh tokens renew them.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
/// Clock skew tolerated between isolates when checking `exp`.
const LEEWAY_SECS: i64 = 30;

pub struct SigningKeys {
    keys: Vec<(String, Hs256Key)>,
}

impl SigningKeys {
    /// Parses `kid:secret,kid:secret`. Secrets must be at least 32 bytes.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kid, secret) = part.split_once(':').ok_or("each key is kid:secret")?;
            let (kid, secret) = (kid.trim(), secret.trim());
            if kid.is_empty() || secret.len() < 32 {
                return Err("each key needs a kid and a secret of at least 32 bytes".into());
            }
            if keys.iter().any(|(k, _): &(String, Hs256Key)| k == kid) {
                return Err(format!("key id {kid} appears twice"));
            }
            keys.push((kid.to_string(), Hs256Key::new(secret.as_bytes())));
        }
        if keys.is_empty() {
            return Err("no signing key".into());
        }
        Ok(Self { keys })
    }

    fn current(&self) -> &(String, Hs256Key) {
        &self.keys[0]
    }

    fn by_id(&self, kid: &str) -> Option<&Hs256Key> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }
}

/// What an access token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub role: String,
    /// Global operator role.
    #[serde(default)]
    pub op: bool,
    /// Session family, so logout can end the tokens it issued.
    pub sid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    /// `alg` other than HS256 (including `none`).
    WrongAlgorithm,
    /// No `kid`, or one not in the key set (e.g. retired by rotation).
    UnknownKey,
    BadSignature,
    Expired,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtError::Malformed => "malformed token",
            JwtError::WrongAlgorithm => "unsupported algorithm",
            JwtError::UnknownKey => "unknown signing key",
            JwtError::BadSignature => "bad signature",
            JwtError::Expired => "token expired",
        })
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub fn issue(keys: &SigningKeys, claims: &AccessClaims, now_ms: i64) -> Result<String, String> {
    let (kid, key) = keys.current();
    let options = TimeOptions::new(Duration::seconds(LEEWAY_SECS), move || at(now_ms));
    let claims = Claims::new(claims.clone()).set_duration_and_issuance(&options, Duration::seconds(ACCESS_TTL_SECS));
    Hs256.token(&Header::empty().with_key_id(kid.clone()).with_token_type("JWT"), &claims, key).map_err(|e| e.to_string())
}

pub fn verify(keys: &SigningKeys, token: &str, now_ms: i64) -> Result<AccessClaims, JwtError> {
    let untrusted = UntrustedToken::new(token).map_err(|_| JwtError::Malformed)?;
    if untrusted.algorithm() != "HS256" {
        return Err(JwtError::WrongAlgorithm);
    }
    let kid = untrusted.header().key_id.as_deref().ok_or(JwtError::UnknownKey)?;
    let key = keys.by_id(kid).ok_or(JwtError::UnknownKey)?;
    let checked: Token<AccessClaims> = Hs256.validator(key).validate(&untrusted).map_err(|_| JwtError::BadSignature)?;
    let options = TimeOptions::new(Duration::seconds(LEEWAY_SECS), move || at(now_ms));
    checked.claims().validate_expiration(&options).map_err(|_| JwtError::Expired)?;
    Ok(checked.claims().custom.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};

    const K1: &str = "k1:0123456789abcdef0123456789abcdef";
    const K2: &str = "k2:fedcba9876543210fedcba9876543210";
    const NOW: i64 = 1_795_313_220_000;

    fn claims() -> AccessClaims {
        AccessClaims {
            sub: "usr_1".into(),
            account_id: "acct_1".into(),
            tenant_id: None,
            role: "owner".into(),
            op: false,
            sid: "fam_1".into(),
        }
    }

    fn keys(spec: &str) -> SigningKeys {
        SigningKeys::parse(spec).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn round_trip() {
        let k = keys(K1);
        let t = issue(&k, &claims(), NOW).unwrap_or_default();
        assert_eq!(verify(&k, &t, NOW + 60_000), Ok(claims()));
    }

    #[test]
    fn expires_after_ttl_plus_leeway() {
        let k = keys(K1);
        let t = issue(&k, &claims(), NOW).unwrap_or_default();
        assert!(verify(&k, &t, NOW + (ACCESS_TTL_SECS + LEEWAY_SECS - 1) * 1000).is_ok());
        assert_eq!(verify(&k, &t, NOW + (ACCESS_TTL_SECS + LEEWAY_SECS + 1) * 1000), Err(JwtError::Expired));
    }

    #[test]
    fn rotation_keeps_old_tokens_until_the_old_key_is_removed() {
        let old = issue(&keys(K1), &claims(), NOW).unwrap_or_default();
        let during = keys(&format!("{K2},{K1}"));
        assert!(verify(&during, &old, NOW).is_ok());
        let fresh = issue(&during, &claims(), NOW).unwrap_or_default();
        assert!(fresh.starts_with("eyJ"));
        assert!(verify(&during, &fresh, NOW).is_ok());
        let after = keys(K2);
        assert_eq!(verify(&after, &old, NOW), Err(JwtError::UnknownKey));
        assert!(verify(&after, &fresh, NOW).is_ok());
    }

    #[test]
    fn tampered_payload_is_refused() {
        let k = keys(K1);
        let t = issue(&k, &claims(), NOW).unwrap_or_default();
        let parts: Vec<&str> = t.split('.').collect();
        let mut payload: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap_or_default()).unwrap_or_default();
        payload["op"] = serde_json::json!(true);
        let forged = format!("{}.{}.{}", parts[0], B64.encode(payload.to_string()), parts[2]);
        assert_eq!(verify(&k, &forged, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let k = keys(K1);
        let t = issue(&k, &claims(), NOW).unwrap_or_default();
        let payload = t.split('.').nth(1).unwrap_or_default();
        for alg in ["none", "HS512", "RS256"] {
            let header = B64.encode(format!(r#"{{"alg":"{alg}","kid":"k1","typ":"JWT"}}"#));
            assert_eq!(verify(&k, &format!("{header}.{payload}."), NOW), Err(JwtError::WrongAlgorithm), "{alg}");
        }
    }

    #[test]
    fn garbage_and_missing_kid_are_refused() {
        let k = keys(K1);
        assert_eq!(verify(&k, "not.a.jwt", NOW), Err(JwtError::Malformed));
        assert_eq!(verify(&k, "", NOW), Err(JwtError::Malformed));
        let t = issue(&k, &claims(), NOW).unwrap_or_default();
        let rest: Vec<&str> = t.splitn(2, '.').collect();
        let header = B64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        assert_eq!(verify(&k, &format!("{header}.{}", rest[1]), NOW), Err(JwtError::UnknownKey));
    }

    #[test]
    fn key_spec_rules() {
        assert!(SigningKeys::parse("").is_err());
        assert!(SigningKeys::parse("k1:short").is_err());
        assert!(SigningKeys::parse(&format!("{K1},{K1}")).is_err());
        assert!(SigningKeys::parse(&format!(" {K1} , {K2} ")).is_ok());
    }
}
