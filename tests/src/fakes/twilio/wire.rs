//! Wire types of Twilio Verify v2, as the real service puts them on the
//! wire. Requests are `application/x-www-form-urlencoded` (parameter names
//! in PascalCase); answers are JSON (snake_case).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// ---------------------------------------------------------------- requests

/// `POST /v2/Services/{ServiceSid}/Verifications` form. Unknown parameters
/// (`Locale`, `CustomFriendlyName`, …) are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct CreateVerificationForm {
    #[serde(rename = "To", default)]
    pub to: Option<String>,
    #[serde(rename = "Channel", default)]
    pub channel: Option<String>,
}

/// `POST /v2/Services/{ServiceSid}/VerificationCheck` form.
#[derive(Debug, Default, Deserialize)]
pub struct VerificationCheckForm {
    #[serde(rename = "To", default)]
    pub to: Option<String>,
    #[serde(rename = "VerificationSid", default)]
    pub verification_sid: Option<String>,
    #[serde(rename = "Code", default)]
    pub code: Option<String>,
}

// ------------------------------------------------------------------ errors

/// `{"code":60200,"message":…,"more_info":"https://www.twilio.com/docs/errors/60200","status":400}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: u32,
    pub message: String,
    pub more_info: String,
    pub status: u16,
}

// --------------------------------------------------------------- resources

/// One entry of `send_code_attempts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendCodeAttempt {
    /// `VL` + 32 hex.
    pub attempt_sid: String,
    pub channel: String,
    /// ISO 8601, UTC, seconds (`2015-07-30T20:00:00Z`).
    pub time: String,
}

/// The Verification resource (answer of `POST …/Verifications`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// `VE` + 32 hex.
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub to: String,
    pub channel: String,
    /// `pending` on creation.
    pub status: String,
    pub valid: bool,
    pub lookup: Map<String, Value>,
    pub amount: Option<String>,
    pub payee: Option<String>,
    pub send_code_attempts: Vec<SendCodeAttempt>,
    pub date_created: String,
    pub date_updated: String,
    pub sna: Option<Value>,
    /// `https://verify.twilio.com/v2/Services/{ServiceSid}/Verifications/{sid}`
    pub url: String,
}

/// The VerificationCheck resource (answer of `POST …/VerificationCheck`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationCheck {
    /// The checked verification's `VE` sid.
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub to: String,
    pub channel: String,
    /// `pending` (wrong code) or `approved`.
    pub status: String,
    pub valid: bool,
    pub amount: Option<String>,
    pub payee: Option<String>,
    pub sna_attempts_error_codes: Vec<Value>,
    pub date_created: String,
    pub date_updated: String,
}

// ----------------------------------------------------------- control plane

/// `GET /__fakes/twilio/verifications?to=…` answer: the code that "was
/// sent".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingVerification {
    pub to: String,
    pub code: String,
    pub status: String,
    pub channel: String,
    pub service_sid: String,
}
