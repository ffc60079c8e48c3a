//! Stripe, without the network: webhook signatures, request encoding, our
//! products, typed views over webhook events, out-of-order protection,
//! meter-event parameters and error mapping.
//!
//! The Worker does the HTTP; everything here is pure and tests natively.
//!
//! * **Webhooks** are signed exactly as Stripe signs them: the
//!   `Stripe-Signature` header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, the
//!   signed payload is `"{t}.{raw body}"` and the MAC is HMAC-SHA256 keyed with
//!   the endpoint secret — the whole `whsec_…` string as UTF-8 bytes, not
//!   base64-decoded (this is what Stripe's own libraries do).
//! * **Requests** to Stripe's v1 API are `application/x-www-form-urlencoded`
//!   with bracketed keys for nesting ([`form_encode`]).
//! * **Events** are read through small views that tolerate both older API
//!   versions and the 2025 ("basil") shapes, where subscription periods moved
//!   to the items and an invoice's subscription moved under `parent`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::keys::constant_time_eq;
use crate::money::MICROS_PER_USD;

// ---------------------------------------------------------------------------
// 1. Webhook signatures
// ---------------------------------------------------------------------------

/// Stripe's recommended (and its libraries' default) tolerance, in seconds.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a webhook was refused. None of these should be retried by us; Stripe
/// redelivers on any non-2xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `Stripe-Signature` header, or an empty one.
    MissingHeader,
    /// The header has no usable `t=` (absent, repeated or not an integer), or
    /// an element without `=`.
    Malformed,
    /// The header carries no `v1=` signature.
    NoV1,
    /// A `v1` signature matched but `t` is further than the tolerance from
    /// now, in either direction.
    Stale,
    /// No `v1` signature matches the body under this secret.
    Mismatch,
}

impl SignatureError {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::MissingHeader => "missing_header",
            SignatureError::Malformed => "malformed",
            SignatureError::NoV1 => "no_v1",
            SignatureError::Stale => "stale",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            SignatureError::MissingHeader => "missing Stripe-Signature header",
            SignatureError::Malformed => "malformed Stripe-Signature header",
            SignatureError::NoV1 => "Stripe-Signature header has no v1 signature",
            SignatureError::Stale => "Stripe-Signature timestamp is outside the tolerance",
            SignatureError::Mismatch => "no Stripe-Signature v1 signature matches the payload",
        };
        f.write_str(text)
    }
}

impl std::error::Error for SignatureError {}

/// HMAC-SHA256 over the concatenated parts. `None` never happens in practice
/// (HMAC accepts keys of any length); it exists so no path can panic.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().into())
}

fn signature_bytes(secret: &str, t: i64, body: &[u8]) -> Option<[u8; 32]> {
    let t = t.to_string();
    hmac_sha256(secret.as_bytes(), &[t.as_bytes(), b".", body])
}

/// Lowercase hex `v1` signature of `body` at time `t`, as Stripe computes it.
pub fn compute_signature(secret: &str, t: i64, body: &[u8]) -> String {
    signature_bytes(secret, t, body).map(hex::encode).unwrap_or_default()
}

/// A complete `Stripe-Signature` header value (`t=…,v1=…`), for the fakes and
/// tests.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", compute_signature(secret, t, body))
}

/// Verifies a `Stripe-Signature` header against the raw request body (the
/// exact bytes received; never a re-serialisation) and returns its `t`.
///
/// Elements are `key=value` separated by commas (whitespace around them is
/// ignored). Exactly one `t` is required; every `v1` is compared, in constant
/// time and without stopping at the first match; `v0` and unknown schemes are
/// ignored. As in Stripe's libraries the signature is checked before the
/// timestamp, so `Stale` means "authentic but too old (or too far in the
/// future)". The timestamp must satisfy `|now - t| <= tolerance_secs`.
/// An empty secret is a misconfiguration and never verifies anything.
pub fn verify_signature(header: &str, raw_body: &[u8], secret: &str, now_secs: i64, tolerance_secs: i64) -> Result<i64, SignatureError> {
    if header.trim().is_empty() {
        return Err(SignatureError::MissingHeader);
    }
    let mut t: Option<i64> = None;
    let mut v1: Vec<&str> = Vec::new();
    for element in header.split(',') {
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        let (key, value) = element.split_once('=').ok_or(SignatureError::Malformed)?;
        match key.trim() {
            "t" => {
                if t.is_some() {
                    return Err(SignatureError::Malformed);
                }
                let value = value.trim();
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed);
                }
                t = Some(value.parse().map_err(|_| SignatureError::Malformed)?);
            }
            "v1" => v1.push(value.trim()),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::NoV1);
    }
    if secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let expected = signature_bytes(secret, t, raw_body).ok_or(SignatureError::Mismatch)?;
    let mut matched = false;
    for candidate in &v1 {
        // A candidate that is not 64 hex digits cannot match; decoding it
        // reveals nothing about the expected value.
        let ok = match hex::decode(candidate) {
            Ok(bytes) => constant_time_eq(&bytes, &expected),
            Err(_) => false,
        };
        matched |= ok;
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let within = match now_secs.checked_sub(t) {
        Some(age) => tolerance_secs >= 0 && age.unsigned_abs() <= tolerance_secs.unsigned_abs(),
        None => false,
    };
    if !within {
        return Err(SignatureError::Stale);
    }
    Ok(t)
}

// ---------------------------------------------------------------------------
// 2. Form encoding
// ---------------------------------------------------------------------------

/// Encodes JSON parameters the way Stripe's v1 API takes them:
/// `{"a":{"b":[{"c":1}]}}` → `a[b][0][c]=1`.
///
/// * Objects nest as `parent[key]`, arrays (of objects or of scalars) as
///   `parent[index]`; empty objects and arrays produce nothing.
/// * Strings are sent as-is, numbers in their JSON text, booleans as
///   `true`/`false`; `null` members are omitted (send `""` to unset a field).
/// * Order is deterministic: object keys sorted (serde_json's default map is a
///   `BTreeMap`, and we sort explicitly so enabling `preserve_order` anywhere
///   in the build cannot change the bytes), array elements in array order.
/// * Keys and values are escaped with `application/x-www-form-urlencoded`
///   rules (alphanumerics and `*-._` kept, space as `+`, the rest `%XX`). The
///   structural brackets of keys are left raw, as stripe-node sends them;
///   Stripe accepts raw and `%5B`/`%5D` alike. A bracket inside a key name is
///   escaped.
/// * A top-level value that is not an object encodes to the empty string.
pub fn form_encode(params: &Value) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Value::Object(map) = params {
        for (key, value) in sorted(map) {
            flatten(&escape(key), value, &mut pairs);
        }
    }
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn flatten(key: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push((key.to_string(), b.to_string())),
        Value::Number(n) => out.push((key.to_string(), escape(&n.to_string()))),
        Value::String(s) => out.push((key.to_string(), escape(s))),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{key}[{i}]"), item, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in sorted(map) {
                flatten(&format!("{key}[{}]", escape(k)), v, out);
            }
        }
    }
}

/// `application/x-www-form-urlencoded` byte serialisation (WHATWG URL).
fn escape(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0x0f) as usize] as char);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// 3. Products
// ---------------------------------------------------------------------------

/// One-time credit packs, in whole US dollars.
pub const CREDIT_PACKS_USD: [i64; 5] = [5, 10, 25, 50, 100];

/// Wallet credit in micro-USD for a pack, or `None` if `usd` is not a pack.
pub fn credit_pack_micros(usd: i64) -> Option<i64> {
    if CREDIT_PACKS_USD.contains(&usd) {
        usd.checked_mul(MICROS_PER_USD)
    } else {
        None
    }
}

/// Checkout `unit_amount` in cents for a pack, or `None` if `usd` is not a pack.
pub fn credit_pack_cents(usd: i64) -> Option<i64> {
    if CREDIT_PACKS_USD.contains(&usd) {
        usd.checked_mul(100)
    } else {
        None
    }
}

/// Monthly subscription plans. Stripe prices are found by
/// [`SubscriptionPlan::lookup_key`], so the amount actually charged is
/// whatever the Stripe price with that lookup key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionPlan {
    Basic,
    Pro,
    Ignition,
    Velocity,
    Dominance,
}

/// The name given to `str::parse::<SubscriptionPlan>` is not a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPlan;

impl fmt::Display for UnknownPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown subscription plan")
    }
}

impl std::error::Error for UnknownPlan {}

impl SubscriptionPlan {
    pub const ALL: [SubscriptionPlan; 5] = [
        SubscriptionPlan::Basic,
        SubscriptionPlan::Pro,
        SubscriptionPlan::Ignition,
        SubscriptionPlan::Velocity,
        SubscriptionPlan::Dominance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionPlan::Basic => "basic",
            SubscriptionPlan::Pro => "pro",
            SubscriptionPlan::Ignition => "ignition",
            SubscriptionPlan::Velocity => "velocity",
            SubscriptionPlan::Dominance => "dominance",
        }
    }

    /// Display price in US cents per month. Basic and Pro are the product's
    /// prices; the persona tiers (Ignition, Velocity, Dominance) are
    /// placeholders — the charged amount comes from the Stripe price carrying
    /// [`Self::lookup_key`], so change it there and mirror it here.
    pub fn monthly_price_cents(self) -> i64 {
        match self {
            SubscriptionPlan::Basic => 5_000,
            SubscriptionPlan::Pro => 25_000,
            SubscriptionPlan::Ignition => 9_700,
            SubscriptionPlan::Velocity => 19_700,
            SubscriptionPlan::Dominance => 49_700,
        }
    }

    /// The Stripe price `lookup_key`: `dex_<plan>_monthly`.
    pub fn lookup_key(self) -> &'static str {
        match self {
            SubscriptionPlan::Basic => "dex_basic_monthly",
            SubscriptionPlan::Pro => "dex_pro_monthly",
            SubscriptionPlan::Ignition => "dex_ignition_monthly",
            SubscriptionPlan::Velocity => "dex_velocity_monthly",
            SubscriptionPlan::Dominance => "dex_dominance_monthly",
        }
    }

    /// Exactly the names [`SubscriptionPlan::as_str`] produces (`"pro"`, not
    /// `"Pro"`). Also available as `str::parse` through [`FromStr`].
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn from_lookup_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.lookup_key() == key)
    }

    /// Ignition, Velocity and Dominance.
    pub fn is_persona_tier(self) -> bool {
        matches!(self, SubscriptionPlan::Ignition | SubscriptionPlan::Velocity | SubscriptionPlan::Dominance)
    }
}

impl FromStr for SubscriptionPlan {
    type Err = UnknownPlan;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubscriptionPlan::from_str(s).ok_or(UnknownPlan)
    }
}

impl fmt::Display for SubscriptionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// 4. Events
// ---------------------------------------------------------------------------

/// The parts of a Stripe event we use. Unknown members are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub type_: String,
    /// Unix seconds at which Stripe created the event (not the delivery time).
    pub created: i64,
    #[serde(default)]
    pub livemode: bool,
    pub data: EventData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    pub object: Value,
    /// On `*.updated` events: the changed members' previous values.
    #[serde(default)]
    pub previous_attributes: Option<Value>,
}

/// Parses a (verified) webhook body. The error text never quotes the body.
pub fn parse_event(raw: &[u8]) -> Result<Event, String> {
    let event: Event = serde_json::from_slice(raw).map_err(|e| format!("invalid Stripe event: {e}"))?;
    if event.id.is_empty() || event.type_.is_empty() {
        return Err("invalid Stripe event: empty id or type".to_string());
    }
    Ok(event)
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn i64_at(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// An expandable reference: either the id string or the expanded object.
fn id_at(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Stripe metadata values are strings; anything else is skipped.
fn metadata_at(v: &Value) -> BTreeMap<String, String> {
    match v.get("metadata") {
        Some(Value::Object(m)) => m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect(),
        _ => BTreeMap::new(),
    }
}

/// `true` if `object` is absent or equal to `expected`.
fn object_is(v: &Value, expected: &str) -> bool {
    match v.get("object") {
        None => true,
        Some(o) => o.as_str() == Some(expected),
    }
}

fn first_item(v: &Value) -> Option<&Value> {
    v.get("items")?.get("data")?.as_array()?.first()
}

fn first_line(v: &Value) -> Option<&Value> {
    v.get("lines")?.get("data")?.as_array()?.first()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutView {
    pub id: String,
    /// `payment`, `subscription` (or `setup`, which we do not create).
    pub mode: String,
    /// `paid`, `unpaid` or `no_payment_required`; empty if absent.
    pub payment_status: String,
    /// `open`, `complete` or `expired`; empty if absent.
    pub status: String,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    /// Smallest currency unit (cents for USD).
    pub amount_total: Option<i64>,
    pub metadata: BTreeMap<String, String>,
    pub client_reference_id: Option<String>,
}

/// A `checkout.session` object, or `None` if it is another object or lacks an
/// id or mode.
pub fn checkout_session_view(object: &Value) -> Option<CheckoutView> {
    if !object_is(object, "checkout.session") {
        return None;
    }
    let id = str_at(object, "id").filter(|s| !s.is_empty())?;
    let mode = str_at(object, "mode")?;
    Some(CheckoutView {
        id,
        mode,
        payment_status: str_at(object, "payment_status").unwrap_or_default(),
        status: str_at(object, "status").unwrap_or_default(),
        customer: id_at(object, "customer"),
        subscription: id_at(object, "subscription"),
        amount_total: i64_at(object, "amount_total"),
        metadata: metadata_at(object),
        client_reference_id: str_at(object, "client_reference_id").filter(|s| !s.is_empty()),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    pub id: String,
    pub customer: String,
    /// `incomplete`, `incomplete_expired`, `trialing`, `active`, `past_due`,
    /// `canceled`, `unpaid` or `paused`.
    pub status: String,
    /// Top-level on older API versions, on `items.data[0]` since 2025-03-31.
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    /// `items.data[0].price.lookup_key`.
    pub plan_lookup_key: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub cancel_at_period_end: bool,
}

impl SubscriptionView {
    /// Our plan, if the first item's price carries one of our lookup keys.
    pub fn plan(&self) -> Option<SubscriptionPlan> {
        self.plan_lookup_key.as_deref().and_then(SubscriptionPlan::from_lookup_key)
    }
}

/// A `subscription` object, or `None` if it is another object or lacks an id,
/// customer or status.
pub fn subscription_view(object: &Value) -> Option<SubscriptionView> {
    if !object_is(object, "subscription") {
        return None;
    }
    let id = str_at(object, "id").filter(|s| !s.is_empty())?;
    let customer = id_at(object, "customer")?;
    let status = str_at(object, "status")?;
    let item = first_item(object);
    let period = |key: &str| i64_at(object, key).or_else(|| item.and_then(|i| i64_at(i, key)));
    Some(SubscriptionView {
        id,
        customer,
        status,
        current_period_start: period("current_period_start"),
        current_period_end: period("current_period_end"),
        plan_lookup_key: item.and_then(|i| i.get("price")).and_then(|p| str_at(p, "lookup_key")),
        metadata: metadata_at(object),
        cancel_at_period_end: object.get("cancel_at_period_end").and_then(Value::as_bool).unwrap_or(false),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceView {
    pub id: String,
    /// Required: an invoice without a customer yields no view.
    pub customer: String,
    /// Top-level `subscription` on older API versions,
    /// `parent.subscription_details.subscription` on newer ones.
    pub subscription: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: Option<String>,
    /// The invoice's own period. For subscription invoices Stripe documents
    /// this as looking back one period; the service period being billed is
    /// [`Self::line_period_start`]/[`Self::line_period_end`].
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    /// `lines.data[0].period.start`/`end`: the period the first line bills.
    pub line_period_start: Option<i64>,
    pub line_period_end: Option<i64>,
    /// e.g. `subscription_create`, `subscription_cycle`, `manual`.
    pub billing_reason: Option<String>,
}

/// An `invoice` object, or `None` if it is another object or lacks an id or
/// a customer.
pub fn invoice_view(object: &Value) -> Option<InvoiceView> {
    if !object_is(object, "invoice") {
        return None;
    }
    let id = str_at(object, "id").filter(|s| !s.is_empty())?;
    let customer = id_at(object, "customer")?;
    let subscription = id_at(object, "subscription")
        .or_else(|| object.get("parent").and_then(|p| p.get("subscription_details")).and_then(|d| id_at(d, "subscription")));
    let line_period = first_line(object).and_then(|l| l.get("period"));
    Some(InvoiceView {
        id,
        customer,
        subscription,
        status: str_at(object, "status"),
        period_start: i64_at(object, "period_start"),
        period_end: i64_at(object, "period_end"),
        line_period_start: line_period.and_then(|p| i64_at(p, "start")),
        line_period_end: line_period.and_then(|p| i64_at(p, "end")),
        billing_reason: str_at(object, "billing_reason"),
    })
}

// ---------------------------------------------------------------------------
// 5. Out-of-order safety
// ---------------------------------------------------------------------------

/// How far along a subscription status is, for breaking ties between events
/// created in the same second:
///
/// | rank | statuses |
/// |---|---|
/// | 5 | `canceled`, `incomplete_expired` (terminal) |
/// | 4 | `past_due`, `unpaid`, `paused` |
/// | 3 | `active` |
/// | 2 | `trialing` |
/// | 1 | `incomplete` |
/// | 0 | anything else |
pub fn status_rank(status: &str) -> u8 {
    match status {
        "canceled" | "incomplete_expired" => 5,
        "past_due" | "unpaid" | "paused" => 4,
        "active" => 3,
        "trialing" => 2,
        "incomplete" => 1,
        _ => 0,
    }
}

/// Whether an incoming subscription state may overwrite the stored one.
///
/// Stripe does not deliver events in order, so each stored subscription keeps
/// the `created` of the event that last wrote it and that state's
/// [`status_rank`]. The rule:
///
/// * nothing stored → apply;
/// * incoming event created later → apply; earlier → ignore;
/// * same second → apply only if the incoming rank is at least the stored one
///   (a missing stored rank counts as 0). So `customer.subscription.created`
///   (`incomplete`) arriving after `customer.subscription.updated` (`active`)
///   from the same second never downgrades, and a redelivery of the same event
///   re-applies harmlessly.
pub fn should_apply(
    stored_event_created: Option<i64>,
    stored_status_rank: Option<u8>,
    incoming_created: i64,
    incoming_status: &str,
) -> bool {
    match stored_event_created {
        None => true,
        Some(stored) if incoming_created > stored => true,
        Some(stored) if incoming_created < stored => false,
        Some(_) => status_rank(incoming_status) >= stored_status_rank.unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------
// 6. Meter events
// ---------------------------------------------------------------------------

/// Stripe's maximum length of a meter event `identifier`.
pub const METER_IDENTIFIER_MAX: usize = 100;

const ACCOUNT_PART_MAX: usize = 36;
const KIND_PART_MAX: usize = 16;

fn is_safe_part(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `s` itself if short and made of `[A-Za-z0-9_-]`, else `h` and the first
/// `hex_len` hex digits of its SHA-256.
fn compact_part(s: &str, max: usize, hex_len: usize) -> String {
    if s.len() <= max && is_safe_part(s) {
        s.to_string()
    } else {
        let digest = hex::encode(Sha256::digest(s.as_bytes()));
        format!("h{}", digest.get(..hex_len).unwrap_or(&digest))
    }
}

/// The idempotency identifier of one meter event:
/// `dex_{account}_{period_start_ms}_{kind}_{seq}`.
///
/// Deterministic, so a retried usage sync sends the same identifier and
/// Stripe drops the duplicate (it enforces uniqueness over a rolling 24 h or
/// more). Always at most 100 characters of `[A-Za-z0-9_-]`: an account id
/// longer than 36 characters or with other characters is replaced by `h` and
/// 32 hex digits of its SHA-256, and likewise a `kind` over 16 characters
/// (12 hex digits). Worst case: 4 + 36 + 1 + 20 + 1 + 16 + 1 + 20 = 99.
pub fn meter_identifier(account_id: &str, period_start_ms: i64, kind: &str, seq: u64) -> String {
    let account = compact_part(account_id, ACCOUNT_PART_MAX, 32);
    let kind = compact_part(kind, KIND_PART_MAX, 12);
    format!("dex_{account}_{period_start_ms}_{kind}_{seq}")
}

/// Parameters for `POST /v1/billing/meter_events` (send with
/// [`form_encode`]). The payload value is a decimal string, as Stripe
/// requires; `timestamp` must be within the past 35 days.
pub fn meter_event_params(event_name: &str, stripe_customer_id: &str, value: u64, identifier: &str, timestamp_secs: i64) -> Value {
    json!({
        "event_name": event_name,
        "payload": { "stripe_customer_id": stripe_customer_id, "value": value.to_string() },
        "identifier": identifier,
        "timestamp": timestamp_secs,
    })
}

// ---------------------------------------------------------------------------
// 7. Errors
// ---------------------------------------------------------------------------

const MAX_MESSAGE_CHARS: usize = 500;

fn clip(s: &str) -> String {
    s.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// Whether a code from [`map_error`] is worth retrying later.
pub fn is_retryable_code(code: &str) -> bool {
    matches!(code, "stripe_rate_limited" | "stripe_unavailable")
}

/// Maps a failed Stripe response (`{"error":{"type","code","message","param"}}`)
/// to our status, code and a message safe to show our user:
///
/// | Stripe | ours |
/// |---|---|
/// | 429 / `rate_limit_error` | 429 `stripe_rate_limited` (retryable) |
/// | 401, 403 / `authentication_error`, `permission_error` | 502 `stripe_misconfigured`, generic message |
/// | 5xx / `api_error` | 502 `stripe_unavailable` (retryable), generic message |
/// | `idempotency_error`, 409 | 409 `stripe_idempotency_conflict`, generic message |
/// | `card_error`, 402 | 402 `payment_failed`, Stripe's message (meant for end users) |
/// | `invalid_request_error`, 400, 404 | 400 `stripe_invalid_request`, Stripe's message |
/// | anything else | 502 `stripe_unavailable` |
///
/// The status decides first for 429, 401/403 and 5xx (our key or Stripe's
/// health matter more than the body); otherwise the error type, then the
/// status. Messages are clipped to 500 characters.
pub fn map_error(status: u16, body: &Value) -> (u16, &'static str, String) {
    let error = body.get("error");
    let kind = error.and_then(|e| e.get("type")).and_then(Value::as_str).unwrap_or("");
    let message = error.and_then(|e| e.get("message")).and_then(Value::as_str).map(clip).filter(|m| !m.trim().is_empty());

    let rate_limited = || (429, "stripe_rate_limited", "The payment provider is rate limiting requests; retry shortly.".to_string());
    let misconfigured = || (502, "stripe_misconfigured", "The payment provider is not configured correctly.".to_string());
    let unavailable = || (502, "stripe_unavailable", "The payment provider is temporarily unavailable.".to_string());
    let idempotency =
        || (409, "stripe_idempotency_conflict", "A conflicting request with the same idempotency key was already made.".to_string());
    let card = |m: Option<String>| (402, "payment_failed", m.unwrap_or_else(|| "The payment was declined.".to_string()));
    let invalid =
        |m: Option<String>| (400, "stripe_invalid_request", m.unwrap_or_else(|| "The payment provider rejected the request.".to_string()));

    match status {
        429 => return rate_limited(),
        401 | 403 => return misconfigured(),
        500..=599 => return unavailable(),
        _ => {}
    }
    match kind {
        "rate_limit_error" => return rate_limited(),
        "authentication_error" | "permission_error" => return misconfigured(),
        "api_error" => return unavailable(),
        "idempotency_error" => return idempotency(),
        "card_error" => return card(message),
        "invalid_request_error" => return invalid(message),
        _ => {}
    }
    match status {
        409 => idempotency(),
        402 => card(message),
        400 | 404 => invalid(message),
        _ => unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret_0123456789";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"checkout.session.completed"}"#;
    const T: i64 = 1_700_000_000;
    /// python3: hmac.new(b"whsec_test_secret_0123456789", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    const VECTOR: &str = "1843645399b5f3c6411330ff385d65ac72067f01bab5ff58a9356225f82f9f87";

    fn verify(header: &str, body: &[u8], secret: &str, now: i64) -> Result<i64, SignatureError> {
        verify_signature(header, body, secret, now, DEFAULT_TOLERANCE_SECS)
    }

    // --- signatures ---

    #[test]
    fn literal_vector_matches_python_hmac() {
        assert_eq!(compute_signature(SECRET, T, BODY), VECTOR);
        assert_eq!(sign(SECRET, T, BODY), format!("t={T},v1={VECTOR}"));
        assert_eq!(verify(&format!("t={T},v1={VECTOR}"), BODY, SECRET, T), Ok(T));
        // Long keys are hashed first by HMAC; python3: hmac.new(b"k"*100, b"1.x", sha256).
        assert_eq!(compute_signature(&"k".repeat(100), 1, b"x"), "8dc72019a8a249d8f2d36e36fac06f4497511f4f50cfee8600a5d97fb8a91da5");
    }

    #[test]
    fn valid_header_verifies() {
        let header = sign(SECRET, T, BODY);
        assert_eq!(verify(&header, BODY, SECRET, T + 10), Ok(T));
        // Whitespace and a v0 element are tolerated.
        let header = format!("t={T}, v1={VECTOR}, v0=deadbeef");
        assert_eq!(verify(&header, BODY, SECRET, T), Ok(T));
    }

    #[test]
    fn second_v1_may_be_the_match() {
        let other = compute_signature("whsec_rotated", T, BODY);
        let header = format!("t={T},v1={other},v1={VECTOR}");
        assert_eq!(verify(&header, BODY, SECRET, T), Ok(T));
        let header = format!("t={T},v1=nothex,v1={VECTOR}");
        assert_eq!(verify(&header, BODY, SECRET, T), Ok(T));
    }

    #[test]
    fn tampered_body_and_wrong_secret_mismatch() {
        let header = sign(SECRET, T, BODY);
        let tampered = br#"{"id":"evt_1","object":"event","type":"checkout.session.expired"}"#;
        assert_eq!(verify(&header, tampered, SECRET, T), Err(SignatureError::Mismatch));
        assert_eq!(verify(&header, BODY, "whsec_other", T), Err(SignatureError::Mismatch));
        assert_eq!(verify(&header, BODY, "", T), Err(SignatureError::Mismatch));
        // Signature for a different timestamp.
        let header = format!("t={},v1={VECTOR}", T + 1);
        assert_eq!(verify(&header, BODY, SECRET, T), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let header = sign(SECRET, T, BODY);
        assert_eq!(verify(&header, BODY, SECRET, T + 300), Ok(T));
        assert_eq!(verify(&header, BODY, SECRET, T - 300), Ok(T));
        assert_eq!(verify(&header, BODY, SECRET, T + 301), Err(SignatureError::Stale));
        assert_eq!(verify(&header, BODY, SECRET, T - 301), Err(SignatureError::Stale));
        assert_eq!(verify_signature(&header, BODY, SECRET, i64::MIN, 300), Err(SignatureError::Stale));
        assert_eq!(verify_signature(&header, BODY, SECRET, T, -1), Err(SignatureError::Stale));
    }

    #[test]
    fn missing_no_v1_and_malformed_headers() {
        assert_eq!(verify("", BODY, SECRET, T), Err(SignatureError::MissingHeader));
        assert_eq!(verify("   ", BODY, SECRET, T), Err(SignatureError::MissingHeader));
        assert_eq!(verify(&format!("t={T}"), BODY, SECRET, T), Err(SignatureError::NoV1));
        assert_eq!(verify(&format!("t={T},v0={VECTOR}"), BODY, SECRET, T), Err(SignatureError::NoV1));
        for bad in [
            format!("v1={VECTOR}"),
            format!("t=abc,v1={VECTOR}"),
            format!("t=-5,v1={VECTOR}"),
            format!("t=,v1={VECTOR}"),
            format!("t={T},t={T},v1={VECTOR}"),
            format!("t={T},garbage,v1={VECTOR}"),
            format!("t=99999999999999999999999,v1={VECTOR}"),
            "nonsense".to_string(),
        ] {
            assert_eq!(verify(&bad, BODY, SECRET, T), Err(SignatureError::Malformed), "{bad}");
        }
    }

    // --- form encoding ---

    #[test]
    fn form_encodes_nested_checkout_params() {
        let params = json!({
            "mode": "payment",
            "line_items": [{
                "price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "$5 credits"}},
                "quantity": 1
            }],
            "metadata": {"account_id": "acct_1"}
        });
        assert_eq!(
            form_encode(&params),
            "line_items[0][price_data][currency]=usd\
             &line_items[0][price_data][product_data][name]=%245+credits\
             &line_items[0][price_data][unit_amount]=500\
             &line_items[0][quantity]=1\
             &metadata[account_id]=acct_1\
             &mode=payment"
        );
    }

    #[test]
    fn form_encodes_arrays_booleans_nulls() {
        let params = json!({
            "expand": ["subscription", "customer"],
            "items": [{"price": "price_a"}, {"price": "price_b", "quantity": 2}],
            "allow_promotion_codes": true,
            "cancel_at_period_end": false,
            "description": null,
            "empty": {},
            "none": [],
            "ratio": 0.5
        });
        assert_eq!(
            form_encode(&params),
            "allow_promotion_codes=true&cancel_at_period_end=false&expand[0]=subscription&expand[1]=customer\
             &items[0][price]=price_a&items[1][price]=price_b&items[1][quantity]=2&ratio=0.5"
        );
        assert_eq!(form_encode(&json!([1, 2])), "");
        assert_eq!(form_encode(&json!("x")), "");
        assert_eq!(form_encode(&json!({})), "");
    }

    #[test]
    fn form_escapes_special_characters() {
        let params = json!({
            "success_url": "https://dex.example/billing?ok=1&s={CHECKOUT_SESSION_ID}",
            "metadata": {"we ird[key]": "a+b=c & d/é~*-._"}
        });
        assert_eq!(
            form_encode(&params),
            "metadata[we+ird%5Bkey%5D]=a%2Bb%3Dc+%26+d%2F%C3%A9%7E*-._\
             &success_url=https%3A%2F%2Fdex.example%2Fbilling%3Fok%3D1%26s%3D%7BCHECKOUT_SESSION_ID%7D"
        );
    }

    // --- products ---

    #[test]
    fn credit_packs() {
        assert_eq!(credit_pack_micros(5), Some(5_000_000));
        assert_eq!(credit_pack_micros(100), Some(100_000_000));
        assert_eq!(credit_pack_cents(25), Some(2_500));
        for bad in [0, 1, 7, 20, 1000, -5, i64::MAX] {
            assert_eq!(credit_pack_micros(bad), None);
            assert_eq!(credit_pack_cents(bad), None);
        }
        for usd in CREDIT_PACKS_USD {
            assert_eq!(credit_pack_micros(usd), Some(usd * MICROS_PER_USD));
        }
    }

    #[test]
    fn plans_round_trip() {
        for plan in SubscriptionPlan::ALL {
            assert_eq!(plan.as_str().parse::<SubscriptionPlan>(), Ok(plan));
            assert_eq!(SubscriptionPlan::from_str(plan.as_str()), Some(plan));
            assert_eq!(SubscriptionPlan::from_lookup_key(plan.lookup_key()), Some(plan));
            assert_eq!(plan.lookup_key(), format!("dex_{}_monthly", plan.as_str()));
            assert_eq!(plan.to_string(), plan.as_str());
        }
        assert_eq!(SubscriptionPlan::Basic.monthly_price_cents(), 5_000);
        assert_eq!(SubscriptionPlan::Pro.monthly_price_cents(), 25_000);
        assert_eq!(SubscriptionPlan::Ignition.monthly_price_cents(), 9_700);
        assert_eq!(SubscriptionPlan::Velocity.monthly_price_cents(), 19_700);
        assert_eq!(SubscriptionPlan::Dominance.monthly_price_cents(), 49_700);
        assert!(!SubscriptionPlan::Basic.is_persona_tier());
        assert!(!SubscriptionPlan::Pro.is_persona_tier());
        assert!(SubscriptionPlan::Ignition.is_persona_tier());
        assert!(SubscriptionPlan::Velocity.is_persona_tier());
        assert!(SubscriptionPlan::Dominance.is_persona_tier());
        assert_eq!("Pro".parse::<SubscriptionPlan>(), Err(UnknownPlan));
        assert_eq!("".parse::<SubscriptionPlan>(), Err(UnknownPlan));
        assert_eq!(SubscriptionPlan::from_str("prepaid"), None);
        assert_eq!(SubscriptionPlan::from_lookup_key("dex_pro_yearly"), None);
    }

    // --- events ---

    const CHECKOUT_PAYMENT: &str = r#"{
      "id": "evt_1PaymentCompleted",
      "object": "event",
      "api_version": "2025-04-30.basil",
      "created": 1717000000,
      "livemode": false,
      "pending_webhooks": 1,
      "request": {"id": null, "idempotency_key": null},
      "type": "checkout.session.completed",
      "data": {
        "object": {
          "id": "cs_test_a1",
          "object": "checkout.session",
          "amount_subtotal": 2500,
          "amount_total": 2500,
          "client_reference_id": "acct_7",
          "currency": "usd",
          "customer": "cus_Q1",
          "customer_details": {"email": "a@example.com"},
          "invoice": null,
          "livemode": false,
          "metadata": {"account_id": "acct_7", "pack_usd": "25", "n": 3},
          "mode": "payment",
          "payment_intent": "pi_3",
          "payment_status": "paid",
          "status": "complete",
          "subscription": null,
          "url": null
        }
      }
    }"#;

    const CHECKOUT_SUBSCRIPTION: &str = r#"{
      "id": "evt_1SubCompleted",
      "object": "event",
      "created": 1717000100,
      "livemode": true,
      "type": "checkout.session.completed",
      "data": {
        "object": {
          "id": "cs_live_b2",
          "object": "checkout.session",
          "amount_total": 25000,
          "client_reference_id": null,
          "customer": {"id": "cus_Q2", "object": "customer"},
          "metadata": {"account_id": "acct_8", "plan": "pro"},
          "mode": "subscription",
          "payment_status": "paid",
          "status": "complete",
          "subscription": "sub_1Q"
        }
      }
    }"#;

    const SUBSCRIPTION_UPDATED: &str = r#"{
      "id": "evt_1SubUpdated",
      "object": "event",
      "api_version": "2025-04-30.basil",
      "created": 1717000200,
      "livemode": false,
      "type": "customer.subscription.updated",
      "data": {
        "object": {
          "id": "sub_1Q",
          "object": "subscription",
          "cancel_at_period_end": true,
          "customer": "cus_Q2",
          "items": {
            "object": "list",
            "data": [{
              "id": "si_1",
              "object": "subscription_item",
              "current_period_end": 1719592200,
              "current_period_start": 1717000200,
              "price": {"id": "price_1", "object": "price", "lookup_key": "dex_pro_monthly", "unit_amount": 25000},
              "quantity": 1
            }],
            "has_more": false
          },
          "metadata": {"account_id": "acct_8"},
          "status": "active"
        },
        "previous_attributes": {"cancel_at_period_end": false}
      }
    }"#;

    const INVOICE_FAILED: &str = r#"{
      "id": "evt_1InvFailed",
      "object": "event",
      "api_version": "2025-04-30.basil",
      "created": 1719592300,
      "livemode": false,
      "type": "invoice.payment_failed",
      "data": {
        "object": {
          "id": "in_1",
          "object": "invoice",
          "amount_due": 25000,
          "billing_reason": "subscription_cycle",
          "customer": "cus_Q2",
          "lines": {"object": "list", "data": [{"id": "il_1", "period": {"start": 1719592200, "end": 1722270600}}]},
          "parent": {
            "type": "subscription_details",
            "quote_details": null,
            "subscription_details": {"metadata": {}, "subscription": "sub_1Q"}
          },
          "period_end": 1719592200,
          "period_start": 1717000200,
          "status": "open"
        }
      }
    }"#;

    #[test]
    fn parses_checkout_payment_session() {
        let event = parse_event(CHECKOUT_PAYMENT.as_bytes()).expect("fixture parses");
        assert_eq!(event.id, "evt_1PaymentCompleted");
        assert_eq!(event.type_, "checkout.session.completed");
        assert_eq!(event.created, 1717000000);
        assert!(!event.livemode);
        assert_eq!(event.data.previous_attributes, None);
        let view = checkout_session_view(&event.data.object).expect("checkout view");
        assert_eq!(view.id, "cs_test_a1");
        assert_eq!(view.mode, "payment");
        assert_eq!(view.payment_status, "paid");
        assert_eq!(view.status, "complete");
        assert_eq!(view.customer.as_deref(), Some("cus_Q1"));
        assert_eq!(view.subscription, None);
        assert_eq!(view.amount_total, Some(2500));
        assert_eq!(view.client_reference_id.as_deref(), Some("acct_7"));
        assert_eq!(view.metadata.get("account_id").map(String::as_str), Some("acct_7"));
        assert_eq!(view.metadata.get("pack_usd").map(String::as_str), Some("25"));
        assert!(!view.metadata.contains_key("n"));
        assert_eq!(subscription_view(&event.data.object), None);
        assert_eq!(invoice_view(&event.data.object), None);
    }

    #[test]
    fn parses_checkout_subscription_session() {
        let event = parse_event(CHECKOUT_SUBSCRIPTION.as_bytes()).expect("fixture parses");
        assert!(event.livemode);
        let view = checkout_session_view(&event.data.object).expect("checkout view");
        assert_eq!(view.mode, "subscription");
        assert_eq!(view.customer.as_deref(), Some("cus_Q2"));
        assert_eq!(view.subscription.as_deref(), Some("sub_1Q"));
        assert_eq!(view.client_reference_id, None);
        assert_eq!(view.amount_total, Some(25000));
    }

    #[test]
    fn parses_subscription_with_period_on_items() {
        let event = parse_event(SUBSCRIPTION_UPDATED.as_bytes()).expect("fixture parses");
        assert_eq!(event.data.previous_attributes, Some(json!({"cancel_at_period_end": false})));
        let view = subscription_view(&event.data.object).expect("subscription view");
        assert_eq!(view.id, "sub_1Q");
        assert_eq!(view.customer, "cus_Q2");
        assert_eq!(view.status, "active");
        assert_eq!(view.current_period_start, Some(1717000200));
        assert_eq!(view.current_period_end, Some(1719592200));
        assert_eq!(view.plan_lookup_key.as_deref(), Some("dex_pro_monthly"));
        assert_eq!(view.plan(), Some(SubscriptionPlan::Pro));
        assert!(view.cancel_at_period_end);
        assert_eq!(view.metadata.get("account_id").map(String::as_str), Some("acct_8"));
        assert_eq!(checkout_session_view(&event.data.object), None);
    }

    #[test]
    fn subscription_period_prefers_top_level_of_older_api_versions() {
        let object = json!({
            "id": "sub_old", "object": "subscription", "customer": "cus_1", "status": "trialing",
            "current_period_start": 100, "current_period_end": 200,
            "items": {"data": [{"current_period_start": 1, "current_period_end": 2, "price": {"lookup_key": null}}]}
        });
        let view = subscription_view(&object).expect("view");
        assert_eq!((view.current_period_start, view.current_period_end), (Some(100), Some(200)));
        assert_eq!(view.plan_lookup_key, None);
        assert_eq!(view.plan(), None);
        assert!(!view.cancel_at_period_end);
        assert_eq!(subscription_view(&json!({"id": "sub_x", "status": "active"})), None);
    }

    #[test]
    fn parses_invoice_with_parent_subscription_details() {
        let event = parse_event(INVOICE_FAILED.as_bytes()).expect("fixture parses");
        assert_eq!(event.type_, "invoice.payment_failed");
        let view = invoice_view(&event.data.object).expect("invoice view");
        assert_eq!(view.id, "in_1");
        assert_eq!(view.customer, "cus_Q2");
        assert_eq!(view.subscription.as_deref(), Some("sub_1Q"));
        assert_eq!(view.status.as_deref(), Some("open"));
        assert_eq!(view.period_start, Some(1717000200));
        assert_eq!(view.period_end, Some(1719592200));
        assert_eq!(view.line_period_start, Some(1719592200));
        assert_eq!(view.line_period_end, Some(1722270600));
        assert_eq!(view.billing_reason.as_deref(), Some("subscription_cycle"));
    }

    #[test]
    fn invoice_subscription_top_level_in_older_api_versions() {
        let object = json!({"id": "in_2", "object": "invoice", "customer": "cus_1", "subscription": "sub_old", "status": "paid"});
        let view = invoice_view(&object).expect("view");
        assert_eq!(view.subscription.as_deref(), Some("sub_old"));
        assert_eq!(view.line_period_start, None);
        assert_eq!(invoice_view(&json!({"id": "in_3", "object": "invoice", "customer": null})), None);
    }

    #[test]
    fn rejects_bad_events() {
        assert!(parse_event(b"").is_err());
        assert!(parse_event(b"not json").is_err());
        assert!(parse_event(br#"{"id":"evt_1","type":"x","created":1}"#).is_err());
        assert!(parse_event(br#"{"id":"","type":"x","created":1,"data":{"object":{}}}"#).is_err());
        assert!(parse_event(br#"{"id":"evt_1","type":"x","created":"soon","data":{"object":{}}}"#).is_err());
        let ok = parse_event(br#"{"id":"evt_1","type":"x","created":1,"data":{"object":{},"previous_attributes":null}}"#).expect("ok");
        assert!(!ok.livemode);
        assert_eq!(ok.data.previous_attributes, None);
        assert_eq!(checkout_session_view(&json!(null)), None);
        assert_eq!(checkout_session_view(&json!({"object": "checkout.session", "id": "cs_1"})), None);
        assert_eq!(invoice_view(&json!([1, 2])), None);
    }

    // --- out-of-order ---

    #[test]
    fn status_ranks_follow_the_documented_order() {
        assert!(status_rank("canceled") > status_rank("past_due"));
        assert_eq!(status_rank("past_due"), status_rank("unpaid"));
        assert!(status_rank("unpaid") > status_rank("active"));
        assert!(status_rank("active") > status_rank("trialing"));
        assert!(status_rank("trialing") > status_rank("incomplete"));
        assert!(status_rank("incomplete") > status_rank("mystery"));
        assert_eq!(status_rank("incomplete_expired"), status_rank("canceled"));
    }

    #[test]
    fn should_apply_matrix() {
        let active = Some(status_rank("active"));
        // Nothing stored.
        assert!(should_apply(None, None, 10, "incomplete"));
        assert!(should_apply(None, Some(5), 10, "incomplete"));
        // Newer wins whatever the status; older never does.
        assert!(should_apply(Some(10), Some(status_rank("canceled")), 11, "active"));
        assert!(!should_apply(Some(10), Some(status_rank("incomplete")), 9, "canceled"));
        // Same second: created (incomplete) after updated (active) never downgrades.
        assert!(!should_apply(Some(10), active, 10, "incomplete"));
        assert!(!should_apply(Some(10), active, 10, "trialing"));
        assert!(should_apply(Some(10), active, 10, "active"));
        assert!(should_apply(Some(10), active, 10, "past_due"));
        assert!(should_apply(Some(10), active, 10, "canceled"));
        assert!(!should_apply(Some(10), Some(status_rank("canceled")), 10, "unpaid"));
        // Unknown stored rank counts as 0.
        assert!(should_apply(Some(10), None, 10, "incomplete"));
    }

    // --- meter events ---

    #[test]
    fn meter_identifier_is_deterministic_and_short() {
        let a = meter_identifier("acct_4Z3x9QmT0aBcDeFgHiJkLm", 1_717_000_000_000, "input", 3);
        assert_eq!(a, "dex_acct_4Z3x9QmT0aBcDeFgHiJkLm_1717000000000_input_3");
        assert_eq!(a, meter_identifier("acct_4Z3x9QmT0aBcDeFgHiJkLm", 1_717_000_000_000, "input", 3));
        assert_ne!(a, meter_identifier("acct_4Z3x9QmT0aBcDeFgHiJkLm", 1_717_000_000_000, "output", 3));
        assert_ne!(a, meter_identifier("acct_4Z3x9QmT0aBcDeFgHiJkLm", 1_717_000_000_000, "input", 4));
        assert_ne!(a, meter_identifier("acct_4Z3x9QmT0aBcDeFgHiJkLn", 1_717_000_000_000, "input", 3));

        let long = "acct_".to_string() + &"x".repeat(200);
        let h = meter_identifier(&long, i64::MIN, &"k".repeat(40), u64::MAX);
        assert!(h.len() <= METER_IDENTIFIER_MAX, "{} chars", h.len());
        assert_eq!(h, meter_identifier(&long, i64::MIN, &"k".repeat(40), u64::MAX));
        assert_ne!(h, meter_identifier(&(long.clone() + "y"), i64::MIN, &"k".repeat(40), u64::MAX));
        let odd = meter_identifier("acct with spaces/ü", 0, "in put", 0);
        assert!(odd.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{odd}");
        let max = meter_identifier(&"a".repeat(36), i64::MIN, &"b".repeat(16), u64::MAX);
        assert!(max.len() <= METER_IDENTIFIER_MAX, "{} chars", max.len());
        assert!(max.contains(&"a".repeat(36)));
    }

    #[test]
    fn meter_event_params_shape_and_encoding() {
        let params = meter_event_params("dex_tokens", "cus_Q2", 12_345, "dex_acct_1_0_input_0", 1_717_000_000);
        assert_eq!(
            params,
            json!({
                "event_name": "dex_tokens",
                "payload": {"stripe_customer_id": "cus_Q2", "value": "12345"},
                "identifier": "dex_acct_1_0_input_0",
                "timestamp": 1_717_000_000
            })
        );
        assert_eq!(
            form_encode(&params),
            "event_name=dex_tokens&identifier=dex_acct_1_0_input_0&payload[stripe_customer_id]=cus_Q2&payload[value]=12345&timestamp=1717000000"
        );
    }

    // --- errors ---

    fn stripe_error(kind: &str, message: &str) -> Value {
        json!({"error": {"type": kind, "code": "some_code", "message": message, "param": "line_items[0][price]"}})
    }

    #[test]
    fn map_error_table() {
        let cases: Vec<(u16, Value, u16, &str, Option<&str>)> = vec![
            (
                400,
                stripe_error("invalid_request_error", "No such price: 'price_x'"),
                400,
                "stripe_invalid_request",
                Some("No such price: 'price_x'"),
            ),
            (404, stripe_error("invalid_request_error", "No such customer"), 400, "stripe_invalid_request", Some("No such customer")),
            (402, stripe_error("card_error", "Your card was declined."), 402, "payment_failed", Some("Your card was declined.")),
            (402, json!({}), 402, "payment_failed", Some("The payment was declined.")),
            (429, stripe_error("rate_limit_error", "Too many requests"), 429, "stripe_rate_limited", None),
            (400, stripe_error("rate_limit_error", "Too many requests"), 429, "stripe_rate_limited", None),
            (401, stripe_error("authentication_error", "Invalid API Key provided: sk_live_****abcd"), 502, "stripe_misconfigured", None),
            (403, stripe_error("invalid_request_error", "secret detail"), 502, "stripe_misconfigured", None),
            (500, stripe_error("api_error", "internal detail"), 502, "stripe_unavailable", None),
            (503, json!("not an object"), 502, "stripe_unavailable", None),
            (200, stripe_error("api_error", "odd"), 502, "stripe_unavailable", None),
            (409, stripe_error("idempotency_error", "Keys for idempotent requests ... 'key_1'"), 409, "stripe_idempotency_conflict", None),
            (400, stripe_error("idempotency_error", "same key, other params"), 409, "stripe_idempotency_conflict", None),
            (409, json!({}), 409, "stripe_idempotency_conflict", None),
            (400, json!({"error": {"type": "invalid_request_error"}}), 400, "stripe_invalid_request", None),
            (424, json!({}), 502, "stripe_unavailable", None),
        ];
        for (status, body, want_status, want_code, want_message) in cases {
            let (got_status, got_code, message) = map_error(status, &body);
            assert_eq!((got_status, got_code), (want_status, want_code), "{status} {body}");
            if let Some(m) = want_message {
                assert_eq!(message, m);
            }
            assert!(!message.is_empty());
            assert!(!message.contains("sk_live"), "{message}");
            assert!(!message.contains("detail"), "{message}");
            assert!(!message.contains("key_1"), "{message}");
        }
        assert!(is_retryable_code("stripe_rate_limited"));
        assert!(is_retryable_code("stripe_unavailable"));
        assert!(!is_retryable_code("payment_failed"));
        let long = "x".repeat(5_000);
        assert_eq!(map_error(400, &stripe_error("invalid_request_error", &long)).2.len(), 500);
    }
}
