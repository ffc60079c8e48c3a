//! Test-side helpers for talking to a fakes server with any HTTP client:
//! control-plane URLs, script bodies, the recorded-request types, SSE
//! splitters and the OpenAI and Anthropic fakes' expected answers.
//!
//! ```
//! use dex_edge_tests::fakes::client::{self, ScriptSpec};
//! let body = ScriptSpec::new("openai", "/v1/chat/completions")
//!     .status(429)
//!     .header("retry-after", "2")
//!     .to_json();
//! assert_eq!(body["status"], 429);
//! assert_eq!(client::requests_url("http://127.0.0.1:8790", Some("openai"), None),
//!            "http://127.0.0.1:8790/__fakes/requests?provider=openai");
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::openrouter::wire::{MintedKey, MintedKeys};
pub use super::recorder::{RecordedRequest, RecordedRequests, RequestFilter};
pub use super::script::{ActiveScript, ScriptSpec};
pub use super::stripe::wire::{CompleteCheckout, Delivery, DeliveryReport, MeterEvents, SendEvent, StripeEvents};
pub use super::twilio::wire::PendingVerification;
pub use super::{DEFAULT_PORT, PROVIDER_NAMES};

/// OpenAI fake constants and formulas, to compute expected answers.
pub mod openai {
    pub use crate::fakes::openai::{
        content_text, embedding_for, prompt_tokens, reply_text, tokens_for, DEFAULT_EMBEDDING_DIMENSIONS, MODELS, QUOTE_CHARS,
        REPLY_PREFIX, STREAM_CHUNK_CHARS, TOKENS_PER_MESSAGE, TOOL_ARGUMENTS, TOOL_CALL_ID,
    };
}

/// Anthropic fake constants and formulas, to compute expected answers.
pub mod anthropic {
    pub use crate::fakes::anthropic::{
        input_tokens, message_text, reply_text, system_text, tokens_for, tool_use_tokens, user_text, API_KEY_HEADER, CACHE_CREATION_TOKENS,
        CACHE_READ_TOKENS, MODELS, QUOTE_CHARS, REPLY_PREFIX, REQUEST_ID_HEADER, START_OUTPUT_TOKENS, STREAM_CHUNK_CHARS,
        TOKENS_PER_MESSAGE, TOOL_INPUT, TOOL_USE_EXTRA_TOKENS, TOOL_USE_ID, VERSION_HEADER,
    };
}

/// Stripe fake constants and the signature it puts on webhooks.
pub mod stripe {
    pub use crate::fakes::stripe::wire::{compute_signature, parse_form, signature_header};
    pub use crate::fakes::stripe::{API_VERSION, PERIOD_SECS, WEBHOOK_CONTENT_TYPE, WEBHOOK_USER_AGENT};
}

/// Control-plane paths.
pub const HEALTH_PATH: &str = "/__fakes/health";
pub const REQUESTS_PATH: &str = "/__fakes/requests";
pub const SCRIPT_PATH: &str = "/__fakes/script";
pub const RESET_PATH: &str = "/__fakes/reset";
/// `GET ?to=<E.164>`: the code of the newest pending Twilio Verify
/// verification to that number.
pub const TWILIO_VERIFICATIONS_PATH: &str = "/__fakes/twilio/verifications";
/// `GET`: every OpenRouter key minted through `POST /v1/keys` since the
/// last reset, full keys included ([`MintedKeys`]).
pub const OPENROUTER_KEYS_PATH: &str = "/__fakes/openrouter/keys";
/// `GET`: meter events the Stripe fake accepted ([`MeterEvents`]).
pub const STRIPE_METER_EVENTS_PATH: &str = "/__fakes/stripe/meter_events";
/// `GET`: every event the Stripe fake built ([`StripeEvents`]).
pub const STRIPE_EVENTS_PATH: &str = "/__fakes/stripe/events";
/// `POST` [`SendEvent`]: build, sign and deliver any event ([`DeliveryReport`]).
pub const STRIPE_SEND_EVENT_PATH: &str = "/__fakes/stripe/events/send";

/// Contents of the `--ready-file` written by the `fakes` binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyFile {
    pub url: String,
}

/// Prefix printed on stdout by the `fakes` binary, followed by the URL.
pub const LISTENING_PREFIX: &str = "FAKES_LISTENING ";

/// The URL in a `FAKES_LISTENING http://…` line.
pub fn parse_listening_line(line: &str) -> Option<&str> {
    line.trim().strip_prefix(LISTENING_PREFIX).map(str::trim)
}

/// Base URL of a provider on a fakes server at `base`
/// (`provider_base("http://127.0.0.1:8790", "openrouter")` →
/// `http://127.0.0.1:8790/openrouter/api`, OpenRouter's API root).
pub fn provider_base(base: &str, provider: &str) -> String {
    let base = base.trim_end_matches('/');
    match provider {
        "openrouter" => format!("{base}/openrouter/api"),
        other => format!("{base}/{other}"),
    }
}

fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `GET` URL of the recorded requests, optionally filtered.
pub fn requests_url(base: &str, provider: Option<&str>, path: Option<&str>) -> String {
    let base = base.trim_end_matches('/');
    let mut query: Vec<String> = Vec::new();
    if let Some(p) = provider {
        query.push(format!("provider={}", encode_query_value(p)));
    }
    if let Some(p) = path {
        query.push(format!("path={}", encode_query_value(p)));
    }
    if query.is_empty() {
        format!("{base}{REQUESTS_PATH}")
    } else {
        format!("{base}{REQUESTS_PATH}?{}", query.join("&"))
    }
}

/// `POST` (add), `GET` (list) and `DELETE` (clear) URL of the scripts.
pub fn script_url(base: &str) -> String {
    format!("{}{SCRIPT_PATH}", base.trim_end_matches('/'))
}

/// `POST` URL that clears both recordings and scripts.
pub fn reset_url(base: &str) -> String {
    format!("{}{RESET_PATH}", base.trim_end_matches('/'))
}

/// `GET` URL of the newest pending Twilio Verify verification to `to`
/// (answers [`PendingVerification`], or 404 `{"error":"none"}`).
pub fn twilio_verifications_url(base: &str, to: &str) -> String {
    format!("{}{TWILIO_VERIFICATIONS_PATH}?to={}", base.trim_end_matches('/'), encode_query_value(to))
}

/// `GET` URL of the minted OpenRouter keys ([`MintedKeys`]).
pub fn openrouter_keys_url(base: &str) -> String {
    format!("{}{OPENROUTER_KEYS_PATH}", base.trim_end_matches('/'))
}

/// `GET` URL of the accepted Stripe meter events ([`MeterEvents`]).
pub fn stripe_meter_events_url(base: &str) -> String {
    format!("{}{STRIPE_METER_EVENTS_PATH}", base.trim_end_matches('/'))
}

/// `GET` URL of every event the Stripe fake built ([`StripeEvents`]).
pub fn stripe_events_url(base: &str) -> String {
    format!("{}{STRIPE_EVENTS_PATH}", base.trim_end_matches('/'))
}

/// `POST` URL that sends an arbitrary signed event ([`SendEvent`]).
pub fn stripe_send_event_url(base: &str) -> String {
    format!("{}{STRIPE_SEND_EVENT_PATH}", base.trim_end_matches('/'))
}

/// `POST` URL that completes a Checkout Session ([`CompleteCheckout`]) and
/// delivers its events ([`DeliveryReport`]).
pub fn stripe_complete_checkout_url(base: &str, session_id: &str) -> String {
    format!("{}/__fakes/stripe/checkout/{}/complete", base.trim_end_matches('/'), encode_query_value(session_id))
}

/// `GET` URL of a Checkout Session as the Stripe fake stores it.
pub fn stripe_checkout_url(base: &str, session_id: &str) -> String {
    format!("{}/__fakes/stripe/checkout/{}", base.trim_end_matches('/'), encode_query_value(session_id))
}

/// `GET` URL of a subscription as the Stripe fake stores it.
pub fn stripe_subscription_url(base: &str, subscription_id: &str) -> String {
    format!("{}/__fakes/stripe/subscriptions/{}", base.trim_end_matches('/'), encode_query_value(subscription_id))
}

pub fn health_url(base: &str) -> String {
    format!("{}{HEALTH_PATH}", base.trim_end_matches('/'))
}

/// Builder for the body of `POST /__fakes/script`.
impl ScriptSpec {
    /// A script for `provider` and `path` (after the provider prefix), used
    /// once, that changes nothing until configured.
    pub fn new(provider: &str, path: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            method: None,
            path: path.to_owned(),
            times: Some(1),
            status: None,
            body: None,
            headers: Default::default(),
            delay_ms: None,
            chunk_delay_ms: None,
            abort_after_chunks: None,
            omit_usage: false,
            body_contains: None,
        }
    }

    /// Match only requests whose body contains `needle`.
    pub fn body_contains(mut self, needle: &str) -> Self {
        self.body_contains = Some(needle.to_owned());
        self
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Used for this many matching requests.
    pub fn times(mut self, times: u64) -> Self {
        self.times = Some(times).filter(|&n| n > 0);
        self
    }

    /// Used for every matching request until the scripts are cleared.
    pub fn forever(mut self) -> Self {
        self.times = None;
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.to_owned());
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }

    pub fn chunk_delay_ms(mut self, ms: u64) -> Self {
        self.chunk_delay_ms = Some(ms);
        self
    }

    pub fn abort_after_chunks(mut self, chunks: u64) -> Self {
        self.abort_after_chunks = Some(chunks);
        self
    }

    pub fn omit_usage(mut self) -> Self {
        self.omit_usage = true;
        self
    }

    /// The JSON body to `POST` to [`script_url`].
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `GET /__fakes/script` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct ScriptList {
    pub scripts: Vec<ListedScript>,
}

/// One entry of [`ScriptList`].
#[derive(Debug, Clone, Deserialize)]
pub struct ListedScript {
    pub id: u64,
    pub provider: String,
    pub path: String,
    #[serde(default)]
    pub method: Option<String>,
    pub remaining: Option<u64>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

/// One event of an SSE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// A `data:` payload (lines joined with `\n`).
    Data(String),
    /// `data: [DONE]`.
    Done,
}

impl SseEvent {
    /// The payload as JSON, for `Data`.
    pub fn json(&self) -> Option<Value> {
        match self {
            SseEvent::Data(data) => serde_json::from_str(data).ok(),
            SseEvent::Done => None,
        }
    }
}

/// Splits a (possibly truncated) SSE body into its complete events; a
/// trailing event without its blank line is dropped.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let text = text.replace("\r\n", "\n");
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    // The last piece is whatever follows the final blank line: incomplete.
    blocks.pop();
    blocks
        .into_iter()
        .filter_map(|block| {
            let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data:")).map(|l| l.strip_prefix(' ').unwrap_or(l)).collect();
            if data.is_empty() {
                return None;
            }
            let data = data.join("\n");
            Some(if data == "[DONE]" { SseEvent::Done } else { SseEvent::Data(data) })
        })
        .collect()
}

/// One event of an SSE body with its `event:` name (Anthropic streams name
/// every event after its `type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` payload (lines joined with `\n`).
    pub data: String,
}

impl NamedSseEvent {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Like [`parse_sse`], keeping each event's name; blocks without `data:`
/// are dropped, and so is a trailing event without its blank line.
pub fn parse_named_sse(text: &str) -> Vec<NamedSseEvent> {
    let text = text.replace("\r\n", "\n");
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    blocks.pop();
    blocks
        .into_iter()
        .filter_map(|block| {
            let field = |name: &str| -> Vec<String> {
                block.lines().filter_map(|l| l.strip_prefix(name)).map(|l| l.strip_prefix(' ').unwrap_or(l).to_owned()).collect()
            };
            let data = field("data:");
            if data.is_empty() {
                return None;
            }
            Some(NamedSseEvent { event: field("event:").pop(), data: data.join("\n") })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn script_builder_round_trips() {
        let spec =
            ScriptSpec::new("openai", "/v1/chat/completions").method("post").status(500).times(2).header("Retry-After", "1").omit_usage();
        let v = spec.to_json();
        assert_eq!(v["method"], "POST");
        assert_eq!(v["times"], 2);
        assert_eq!(v["headers"], json!({"retry-after": "1"}));
        assert_eq!(v["omit_usage"], true);
        let back: ScriptSpec = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, spec);
        let forever = ScriptSpec::new("openai", "/x").forever().to_json();
        assert_eq!(forever["times"], Value::Null);
    }

    #[test]
    fn urls() {
        assert_eq!(
            requests_url("http://h:1/", Some("openai"), Some("/v1/chat/completions")),
            "http://h:1/__fakes/requests?provider=openai&path=/v1/chat/completions"
        );
        assert_eq!(requests_url("http://h:1", None, None), "http://h:1/__fakes/requests");
        assert_eq!(provider_base("http://h:1", "openrouter"), "http://h:1/openrouter/api");
        assert_eq!(provider_base("http://h:1", "openai"), "http://h:1/openai");
        assert_eq!(openrouter_keys_url("http://h:1/"), "http://h:1/__fakes/openrouter/keys");
        assert_eq!(twilio_verifications_url("http://h:1/", "+14155550123"), "http://h:1/__fakes/twilio/verifications?to=%2B14155550123");
        assert_eq!(parse_listening_line("FAKES_LISTENING http://127.0.0.1:5\n"), Some("http://127.0.0.1:5"));
    }

    #[test]
    fn sse_split() {
        let events = parse_sse("data: {\"a\":1}\n\ndata: [DONE]\n\ndata: {\"tr");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].json(), Some(json!({"a": 1})));
        assert_eq!(events[1], SseEvent::Done);
        let named = parse_named_sse("event: ping\ndata: {\"type\":\"ping\"}\n\nevent: x\n\ndata: 1\n\nevent: cut\ndata: {");
        assert_eq!(named.len(), 2);
        assert_eq!(named[0].event.as_deref(), Some("ping"));
        assert_eq!(named[0].json(), Some(json!({"type": "ping"})));
        assert_eq!(named[1], NamedSseEvent { event: None, data: "1".into() });
    }
}
