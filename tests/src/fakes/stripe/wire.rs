//! Wire formats of the Stripe fake: Stripe's form encoding of v1 request
//! parameters (bracketed keys, parsed here to nested JSON), Stripe's error
//! body, webhook signatures, and the control plane's request and answer
//! types.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

// ------------------------------------------------------------------ params

/// A parameter Stripe would refuse while parsing the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub message: String,
    /// The offending parameter (`metadata`, `line_items[0]`), if known.
    pub param: Option<String>,
}

impl ParamError {
    fn new(message: impl Into<String>, param: &str) -> Self {
        Self { message: message.into(), param: Some(param.to_owned()).filter(|p| !p.is_empty()) }
    }
}

/// One bracketed segment of a parameter name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `[name]` (or the root before the first bracket).
    Key(String),
    /// `[]`: append to a list.
    Push,
}

/// `line_items[0][price_data][unit_amount]` → its segments; `None` if the
/// brackets are unbalanced or the root is empty.
fn split_key(key: &str) -> Option<Vec<Segment>> {
    let (root, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if root.is_empty() {
        return None;
    }
    let mut segments = vec![Segment::Key(root.to_owned())];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        let name = &inner[..close];
        if name.contains('[') {
            return None;
        }
        segments.push(if name.is_empty() { Segment::Push } else { Segment::Key(name.to_owned()) });
        rest = &inner[close + 1..];
    }
    Some(segments)
}

fn insert_at(slot: &mut Value, segments: &[Segment], value: String, param: &str) -> Result<(), ParamError> {
    match segments.split_first() {
        None => match slot {
            Value::Null | Value::String(_) => {
                *slot = Value::String(value);
                Ok(())
            }
            Value::Array(_) => Err(ParamError::new("Invalid array", param)),
            _ => Err(ParamError::new("Invalid hash", param)),
        },
        Some((Segment::Push, rest)) => {
            if !rest.is_empty() {
                return Err(ParamError::new("Invalid array: use explicit indexes (`name[0][key]`) for lists of hashes", param));
            }
            if slot.is_null() {
                *slot = Value::Array(Vec::new());
            }
            match slot {
                Value::Array(items) => {
                    items.push(Value::String(value));
                    Ok(())
                }
                _ => Err(ParamError::new("Invalid array", param)),
            }
        }
        Some((Segment::Key(name), rest)) => {
            if slot.is_null() {
                *slot = Value::Object(Map::new());
            }
            match slot {
                Value::Object(map) => insert_at(map.entry(name.clone()).or_insert(Value::Null), rest, value, param),
                _ => Err(ParamError::new("Invalid hash", param)),
            }
        }
    }
}

/// Hashes whose keys are all indexes (`line_items[0]`, `line_items[1]`)
/// become lists, in index order, except under `metadata` (whose keys are
/// the caller's own).
fn index_lists(value: Value, key: &str) -> Value {
    match value {
        Value::Object(map) => {
            let is_list =
                key != "metadata" && !map.is_empty() && map.keys().all(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
            let converted: Vec<(String, Value)> = map.into_iter().map(|(k, v)| (k.clone(), index_lists(v, &k))).collect();
            if is_list {
                let mut items: Vec<(u64, Value)> = converted.into_iter().map(|(k, v)| (k.parse().unwrap_or(u64::MAX), v)).collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(converted.into_iter().collect())
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| index_lists(v, "")).collect()),
        other => other,
    }
}

/// Parses Stripe's `application/x-www-form-urlencoded` parameters (a body
/// or a query string) to nested JSON: `metadata[account_id]=a` →
/// `{"metadata":{"account_id":"a"}}`, `line_items[0][quantity]=1` →
/// `{"line_items":[{"quantity":"1"}]}`, `expand[]=x` → `{"expand":["x"]}`.
/// Every value stays a string, as on the wire; a repeated plain key keeps
/// its last value. A name used both as a value and as a hash is refused
/// ("Invalid hash"), as Stripe does.
pub fn parse_form(text: &str) -> Result<Map<String, Value>, ParamError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(text).map_err(|e| ParamError::new(format!("Invalid request body: {e}"), ""))?;
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        if key.is_empty() {
            continue;
        }
        let segments = split_key(&key).ok_or_else(|| ParamError::new(format!("Invalid parameter name: {key}"), &key))?;
        let param = key.split('[').next().unwrap_or(&key).to_owned();
        insert_at(&mut root, &segments, value, &param)?;
    }
    match index_lists(root, "") {
        Value::Object(map) => Ok(map),
        _ => Ok(Map::new()),
    }
}

// ------------------------------------------------------------------ errors

/// `{"error":{…}}`, Stripe's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `idempotency_error`, `api_error`,
    /// `card_error`, `rate_limit_error`, `authentication_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_log_url: Option<String>,
}

// -------------------------------------------------------------- signatures

/// Lowercase hex HMAC-SHA256 of `"{t}.{body}"` keyed with the whole
/// endpoint secret (`whsec_…` as bytes, not decoded), as Stripe signs.
pub fn compute_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Stripe-Signature` header value: `t=<unix>,v1=<hex>`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", compute_signature(secret, t, body))
}

// ----------------------------------------------------------- control plane

fn is_false(b: &bool) -> bool {
    !*b
}

/// `POST /__fakes/stripe/checkout/{id}/complete` body. Everything is
/// optional: without `webhook_url` the session is completed and its events
/// built (and listed) but not delivered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteCheckout {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The endpoint secret (`whsec_…`); required with `webhook_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Deliveries of each event (default 1, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<u32>,
    /// Send the deliveries of one event all at once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub concurrent: bool,
    /// Alter the body after signing (the signature then fails).
    #[serde(default, skip_serializing_if = "is_false")]
    pub tamper: bool,
    /// Sign with `t = now + offset` (a stale or future timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_offset_secs: Option<i64>,
    /// Sign with another secret than `secret`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub wrong_secret: bool,
    /// `customer_details.email` (else the customer's or `customer_email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `customer_details.name` (else the customer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `items.data[0].price.lookup_key` of the subscription, overriding the
    /// default (metadata `plan`, then the line item's price id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_key: Option<String>,
}

/// `POST /__fakes/stripe/events/send` body: an arbitrary event, built,
/// signed and delivered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEvent {
    pub webhook_url: String,
    pub secret: String,
    /// `customer.subscription.updated`, `invoice.paid`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// `data.object`, sent as given.
    pub object: Value,
    /// `data.previous_attributes` (for `*.updated` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_attributes: Option<Value>,
    /// Event `created` (default now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Event id (default a new `evt_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Event `api_version` (default [`super::API_VERSION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub concurrent: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tamper: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_offset_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub wrong_secret: bool,
}

/// One POST of one event to the webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub event_id: String,
    /// 1, 2, … among this event's deliveries.
    pub attempt: u32,
    /// The endpoint's HTTP status; `null` when it could not be reached.
    pub status: Option<u16>,
    /// Why the endpoint could not be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The endpoint's answer body (first 2,000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Answer of the complete and send endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// Ids of the events built, in delivery order.
    pub events: Vec<String>,
    /// Every delivery, event by event (each event's deliveries in attempt
    /// order, even when sent concurrently).
    pub deliveries: Vec<Delivery>,
    /// The events themselves, as signed (before any tampering).
    #[serde(default)]
    pub event_objects: Vec<Value>,
    /// The completed Checkout Session (complete only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Value>,
    /// The subscription it created (subscription mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Value>,
}

/// `GET /__fakes/stripe/meter_events`: accepted meter events, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeterEvents {
    pub events: Vec<Value>,
}

/// `GET /__fakes/stripe/events`: every event built since the last reset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StripeEvents {
    pub events: Vec<Value>,
}
