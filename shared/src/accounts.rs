//! Accounts and their owners: what a valid new account looks like.

use serde::Deserialize;

use crate::error::ApiError;
use crate::password::password_problem;

pub const PLANS: &[&str] = &["prepaid", "basic", "pro", "ignition", "velocity", "dominance"];

/// Lower-cased, trimmed e-mail, or a 400 saying why not.
pub fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_ascii_lowercase();
    let bad = || ApiError::bad_request("invalid_email", "email must be an address like name@example.com");
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(bad())
    }
}

/// E.164: `+`, a non-zero digit, then 7 to 14 more digits.
pub fn normalize_phone(raw: &str) -> Result<String, ApiError> {
    let phone: String = raw.trim().chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
    let digits = phone.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if ok {
        Ok(phone)
    } else {
        Err(ApiError::bad_request("invalid_phone", "phone must be in E.164 form, like +14155550123"))
    }
}

/// The body of `POST /v1/admin/accounts` (and of the bootstrap, without plan).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccountRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub key_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    pub name: String,
    pub email: String,
    pub password: String,
    pub plan: &'static str,
    pub key_name: String,
}

impl NewAccountRequest {
    pub fn validate(self) -> Result<AccountSpec, ApiError> {
        let email = normalize_email(&self.email)?;
        if let Some(problem) = password_problem(&self.password) {
            return Err(ApiError::bad_request("weak_password", problem));
        }
        let plan_name = self.plan.as_deref().unwrap_or("prepaid");
        let plan = PLANS
            .iter()
            .find(|p| **p == plan_name)
            .copied()
            .ok_or_else(|| ApiError::bad_request("invalid_plan", format!("plan must be one of {}", PLANS.join(", "))))?;
        let name = self.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| email.clone());
        let key_name = self.key_name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        if name.chars().count() > 200 || key_name.chars().count() > 100 {
            return Err(ApiError::bad_request("name_too_long", "name is limited to 200 characters and key_name to 100"));
        }
        Ok(AccountSpec { name, email, password: self.password, plan, key_name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(email: &str, password: &str, plan: Option<&str>) -> NewAccountRequest {
        NewAccountRequest { email: email.into(), password: password.into(), name: None, plan: plan.map(Into::into), key_name: None }
    }

    #[test]
    fn valid_request_gets_defaults() {
        let s = req(" Ada@Example.COM ", "long enough pw", None).validate();
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.email, "ada@example.com");
        assert_eq!(s.plan, "prepaid");
        assert_eq!(s.name, "ada@example.com");
        assert_eq!(s.key_name, "default");
    }

    #[test]
    fn phones_must_be_e164() {
        assert_eq!(normalize_phone(" +1 (415) 555-0123 ").ok().as_deref(), Some("+14155550123"));
        for bad in ["4155550123", "+0123456789", "+1", "+1415555012345678", "+1415abc0123", ""] {
            assert!(normalize_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_fields_with_codes() {
        assert_eq!(req("nope", "long enough pw", None).validate().err().map(|e| e.code), Some("invalid_email"));
        assert_eq!(req("a@b", "long enough pw", None).validate().err().map(|e| e.code), Some("invalid_email"));
        assert_eq!(req("a@b.co", "short", None).validate().err().map(|e| e.code), Some("weak_password"));
        assert_eq!(req("a@b.co", "long enough pw", Some("gold")).validate().err().map(|e| e.code), Some("invalid_plan"));
    }
}
