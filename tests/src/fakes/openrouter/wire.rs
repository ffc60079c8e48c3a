//! Wire types of OpenRouter's key-management API (`/api/v1/keys`), and of
//! the control-plane listing of the keys minted through it.

use serde::{Deserialize, Serialize};
use serde_json::Number;

/// An API key as the key-management API shows it (never the key itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// 64 lowercase hex digits; the key's id in the API paths.
    pub hash: String,
    pub name: String,
    /// `sk-or-v1-` + the key's first 3 and last 4 hex digits.
    pub label: String,
    pub disabled: bool,
    /// Spending limit in USD, as given (`null`: none).
    pub limit: Option<Number>,
    /// `limit` minus `usage` (`null` without a limit).
    pub limit_remaining: Option<Number>,
    /// `"daily"`, `"weekly"`, `"monthly"` or `null`.
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    pub usage: u64,
    pub usage_daily: u64,
    pub usage_weekly: u64,
    pub usage_monthly: u64,
    pub byok_usage: u64,
    pub byok_usage_daily: u64,
    pub byok_usage_weekly: u64,
    pub byok_usage_monthly: u64,
    pub created_at: String,
    /// `null` until the first update.
    pub updated_at: Option<String>,
    pub expires_at: Option<String>,
}

/// `POST /v1/keys` answer (201): the only place the key itself appears.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedKey {
    pub data: ApiKey,
    pub key: String,
}

/// `GET /v1/keys` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyList {
    pub data: Vec<ApiKey>,
}

/// `GET` / `PATCH /v1/keys/{hash}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyData {
    pub data: ApiKey,
}

/// `DELETE /v1/keys/{hash}` answer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: bool,
}

/// `{"error":{"code":401,"message":"No auth credentials found"}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: u16,
    pub message: String,
}

/// One key minted through the fake, as `GET /__fakes/openrouter/keys`
/// lists it (deleted ones included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MintedKey {
    /// The full `sk-or-v1-…` key.
    pub key: String,
    pub hash: String,
    pub name: String,
    pub label: String,
    pub limit: Option<Number>,
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    pub disabled: bool,
    /// Deleted through `DELETE /v1/keys/{hash}` (gone from the API).
    pub deleted: bool,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub expires_at: Option<String>,
}

/// `GET /__fakes/openrouter/keys` answer, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MintedKeys {
    pub keys: Vec<MintedKey>,
}
