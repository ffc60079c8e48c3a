//! Fake of the Anthropic Messages API: messages (plain, streamed, tool use,
//! prompt-cache usage), token counting and models, with deterministic
//! answers and token counts.
//!
//! Mounted at `/anthropic`, paths relative to it:
//! - `POST /v1/messages`, `POST /v1/messages/count_tokens`,
//!   `GET /v1/models`, `GET /v1/models/{id}`. Every route needs a non-empty
//!   `x-api-key` header (else 401 `authentication_error`) and an
//!   `anthropic-version` header (else 400 `invalid_request_error`); every
//!   answer carries `request-id: req_fake_<seq>` (set by the recorder).
//! - Anything else: 404 `not_found_error`.
//!
//! Answers: the text is [`reply_text`] of the last user message's text
//! ([`user_text`]: its string, or its `text` blocks; `tool_result` blocks
//! do not count, so a tool loop ends with a text answer). With `tools`,
//! one `tool_use` block calling the first tool ([`TOOL_USE_ID`], input
//! [`TOOL_INPUT`]) when that text contains `tool` (any case) and
//! `tool_choice` is absent or `auto`; `tool_choice` `any` / `tool` always
//! calls the first / the named tool, `none` never does.
//!
//! Tokens: [`input_tokens`] is [`tokens_for`] (chars / 4, rounded up) of
//! the system text, plus per message [`tokens_for`] its [`message_text`] +
//! [`TOKENS_PER_MESSAGE`]. Output: [`tokens_for`] of the text, or
//! [`tool_use_tokens`] ([`tokens_for`] of the input JSON +
//! [`TOOL_USE_EXTRA_TOKENS`]) for a tool call; a lower `max_tokens` cuts
//! the answer to that many tokens (4 chars each) with
//! `stop_reason: "max_tokens"`. A `stop_sequences` entry found in the text
//! cuts it there first (`stop_reason: "stop_sequence"`). When any system,
//! message or tool block has `cache_control`, the usage reports
//! [`CACHE_READ_TOKENS`] read and [`CACHE_CREATION_TOKENS`] written
//! (`input_tokens` unchanged); otherwise both are 0.
//!
//! Streams (`"stream": true`) send one SSE event (`event: <type>` +
//! `data: <json>`) per body write: `message_start` (usage with the input
//! and cache tokens, `output_tokens: 1`), `content_block_start`, `ping`,
//! the deltas ([`STREAM_CHUNK_CHARS`] chars each), `content_block_stop`,
//! `message_delta` (stop reason, cumulative `usage.output_tokens`),
//! `message_stop`. A text answer of more than 2 deltas gets a second
//! `message_delta` midway through its deltas (`stop_reason: null`, the
//! output tokens of the text so far): clients must keep the last count,
//! not add them up. The script control `omit_usage` drops `usage` from the
//! `message_delta` events.

pub mod wire;

#[cfg(test)]
mod selftest;

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::script::ScriptControls;
use super::{AppState, RequestInfo};
use wire::*;

pub use super::openai::tokens_for;

/// Start of every text answer.
pub const REPLY_PREFIX: &str = "Hello from the fake Anthropic. You said: ";
/// How much of the user's text the answer quotes (chars).
pub const QUOTE_CHARS: usize = 40;
/// Id of the (only) `tool_use` block.
pub const TOOL_USE_ID: &str = "toolu_fake_1";
/// Input of the tool call, as serialized for its output tokens and streamed
/// as `partial_json`.
pub const TOOL_INPUT: &str = r#"{"query":"fake"}"#;
/// Output tokens a tool call costs on top of its input JSON.
pub const TOOL_USE_EXTRA_TOKENS: u64 = 10;
/// Input tokens added per message.
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// `cache_read_input_tokens` of a request with any `cache_control` block.
pub const CACHE_READ_TOKENS: u64 = 5;
/// `cache_creation_input_tokens` of a request with any `cache_control` block.
pub const CACHE_CREATION_TOKENS: u64 = 7;
/// Chars per streamed text delta or `partial_json` fragment.
pub const STREAM_CHUNK_CHARS: usize = 8;
/// `usage.output_tokens` of the `message_start` event.
pub const START_OUTPUT_TOKENS: u64 = 1;

/// Models listed by `GET /v1/models`: (id, display name, created at).
pub const MODELS: [(&str, &str, &str); 2] =
    [("claude-sonnet-4-5", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"), ("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z")];

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header carrying the API version.
pub const VERSION_HEADER: &str = "anthropic-version";
/// Header carrying the request id (`req_fake_<seq>`).
pub const REQUEST_ID_HEADER: &str = "request-id";

// ------------------------------------------------------------------ routes

/// The Anthropic API, paths relative to the mount (`/v1/...`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/messages", post(create_message).fallback(not_found))
        .route("/v1/messages/count_tokens", post(count_tokens).fallback(not_found))
        .route("/v1/models", get(list_models).fallback(not_found))
        .route("/v1/models/{id}", get(get_model).fallback(not_found))
        .route_layer(from_fn(require_headers))
        .fallback(not_found)
}

// ------------------------------------------------------------------ errors

/// An Anthropic error answer: status and `{"type":"error","error":{…}}`.
#[derive(Debug, Clone)]
pub struct AnthropicError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl AnthropicError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { kind: "error".to_owned(), error: ErrorDetail { kind: self.kind.to_owned(), message: self.message.clone() } }
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// A 400 `invalid_request_error`.
fn invalid_request(message: impl Into<String>) -> AnthropicError {
    AnthropicError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// The error `type` Anthropic uses for `status`.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The Anthropic error body for `status` (scripted failures without a
/// body): `{"type":"error","error":{"type":<error_type>,"message":<reason>}}`.
pub fn error_body(status: StatusCode) -> Value {
    let reason = match status.as_u16() {
        529 => "Overloaded",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    serde_json::to_value(AnthropicError::new(status, error_type(status), reason).body()).unwrap_or(Value::Null)
}

async fn not_found() -> AnthropicError {
    AnthropicError::new(StatusCode::NOT_FOUND, "not_found_error", "Not found")
}

// -------------------------------------------------------------- middleware

fn non_empty_header(headers: &HeaderMap, name: &str) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| !v.trim().is_empty())
}

async fn require_headers(req: Request, next: Next) -> Response {
    if !non_empty_header(req.headers(), API_KEY_HEADER) {
        return AnthropicError::new(StatusCode::UNAUTHORIZED, "authentication_error", "x-api-key header is required").into_response();
    }
    if !non_empty_header(req.headers(), VERSION_HEADER) {
        return invalid_request("anthropic-version: header is required").into_response();
    }
    next.run(req).await
}

// ------------------------------------------------------------ token math

/// The answer to a user text: [`REPLY_PREFIX`] + its first [`QUOTE_CHARS`]
/// chars.
pub fn reply_text(user_text: &str) -> String {
    let quoted: String = user_text.chars().take(QUOTE_CHARS).collect();
    format!("{REPLY_PREFIX}{quoted}")
}

/// Text of `system`: the string, or the `text` of its blocks.
pub fn system_text(system: &Value) -> String {
    match system {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// What a user typed in a message `content`: the string, or the `text` of
/// its `text` blocks.
pub fn user_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Text of a message `content` for the token count: the string, or per
/// block its `text` (`text`), its input JSON (`tool_use`), or its content's
/// text (`tool_result`); images and other blocks count nothing.
pub fn message_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(),
                Some("tool_use") => b.get("input").map(Value::to_string).unwrap_or_default(),
                Some("tool_result") => b.get("content").map(user_text).unwrap_or_default(),
                _ => String::new(),
            })
            .collect(),
        _ => String::new(),
    }
}

/// Input tokens: [`tokens_for`] the [`system_text`], plus per message
/// [`tokens_for`] its [`message_text`] + [`TOKENS_PER_MESSAGE`].
pub fn input_tokens(system: Option<&Value>, messages: &[Value]) -> u64 {
    let system = system.map(|s| tokens_for(&system_text(s))).unwrap_or(0);
    system + messages.iter().map(|m| tokens_for(&m.get("content").map(message_text).unwrap_or_default()) + TOKENS_PER_MESSAGE).sum::<u64>()
}

/// Output tokens of a tool call with that input JSON.
pub fn tool_use_tokens(input_json: &str) -> u64 {
    tokens_for(input_json) + TOOL_USE_EXTRA_TOKENS
}

fn has_cache_control_block(blocks: Option<&Value>) -> bool {
    let Some(Value::Array(blocks)) = blocks else {
        return false;
    };
    blocks.iter().any(|b| b.get("cache_control").is_some_and(|c| !c.is_null()) || has_cache_control_block(b.get("content")))
}

/// Whether any system block, message content block (tool results' content
/// included) or tool has a `cache_control`.
pub fn uses_prompt_cache(system: Option<&Value>, messages: &[Value], tools: Option<&Value>) -> bool {
    has_cache_control_block(system) || messages.iter().any(|m| has_cache_control_block(m.get("content"))) || has_cache_control_block(tools)
}

fn take_chars(text: &str, n: u64) -> String {
    text.chars().take(usize::try_from(n).unwrap_or(usize::MAX)).collect()
}

fn split_chars(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

// ------------------------------------------------------------ validation

fn parse_body(body: &Bytes) -> Result<MessagesRequest, AnthropicError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| invalid_request(format!("There was an error parsing the body: {e}")))?;
    if !value.is_object() {
        return Err(invalid_request("Input should be a valid dictionary"));
    }
    serde_json::from_value(value).map_err(|e| invalid_request(format!("Invalid request body: {e}")))
}

fn missing(field: &str) -> AnthropicError {
    invalid_request(format!("{field}: Field required"))
}

fn require_model(model: Option<&Value>) -> Result<String, AnthropicError> {
    match model {
        None | Some(Value::Null) => Err(missing("model")),
        Some(Value::String(s)) if s.is_empty() => Err(invalid_request("model: String should have at least 1 character")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(invalid_request("model: Input should be a valid string")),
    }
}

fn require_max_tokens(value: Option<&Value>) -> Result<u64, AnthropicError> {
    match value {
        None | Some(Value::Null) => Err(missing("max_tokens")),
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(n), _) if n >= 1 => Ok(n),
            (Some(_), _) | (None, Some(_)) => Err(invalid_request("max_tokens: Input should be greater than or equal to 1")),
            (None, None) => Err(invalid_request("max_tokens: Input should be a valid integer")),
        },
    }
}

fn check_block(block: &Value, at: &str) -> Result<(), AnthropicError> {
    if !block.is_object() {
        return Err(invalid_request(format!("{at}: Input should be a valid dictionary")));
    }
    let string_field = |name: &str| -> Result<(), AnthropicError> {
        match block.get(name) {
            Some(Value::String(_)) => Ok(()),
            None | Some(Value::Null) => Err(missing(&format!("{at}.{name}"))),
            Some(_) => Err(invalid_request(format!("{at}.{name}: Input should be a valid string"))),
        }
    };
    match block.get("type").and_then(Value::as_str) {
        Some("text") => string_field("text"),
        Some("image") | Some("document") => match block.get("source") {
            Some(Value::Object(_)) => Ok(()),
            _ => Err(missing(&format!("{at}.source"))),
        },
        Some("tool_use") => {
            string_field("id")?;
            string_field("name")?;
            match block.get("input") {
                Some(Value::Object(_)) => Ok(()),
                _ => Err(invalid_request(format!("{at}.input: Input should be a valid dictionary"))),
            }
        }
        Some("tool_result") => {
            string_field("tool_use_id")?;
            match block.get("content") {
                None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
                Some(Value::Array(inner)) => inner.iter().enumerate().try_for_each(|(k, b)| check_block(b, &format!("{at}.content.{k}"))),
                Some(_) => Err(invalid_request(format!("{at}.content: Input should be a valid string or list"))),
            }
        }
        Some("thinking") | Some("redacted_thinking") | Some("search_result") => Ok(()),
        Some(other) => Err(invalid_request(format!(
            "{at}: Input tag '{other}' found using 'type' does not match any of the expected tags: \
             'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking', 'search_result'"
        ))),
        None => Err(missing(&format!("{at}.type"))),
    }
}

fn check_messages(messages: Option<&Value>) -> Result<&[Value], AnthropicError> {
    let messages = match messages {
        None | Some(Value::Null) => return Err(missing("messages")),
        Some(Value::Array(m)) => m,
        Some(_) => return Err(invalid_request("messages: Input should be a valid list")),
    };
    if messages.is_empty() {
        return Err(invalid_request("messages: at least one message is required"));
    }
    let last = messages.len() - 1;
    for (i, m) in messages.iter().enumerate() {
        if !m.is_object() {
            return Err(invalid_request(format!("messages.{i}: Input should be a valid dictionary")));
        }
        let role = match m.get("role") {
            None | Some(Value::Null) => return Err(missing(&format!("messages.{i}.role"))),
            Some(Value::String(r)) if r == "user" || r == "assistant" => r.as_str(),
            Some(_) => return Err(invalid_request(format!("messages.{i}.role: Input should be 'user' or 'assistant'"))),
        };
        let empty = match m.get("content") {
            None | Some(Value::Null) => return Err(missing(&format!("messages.{i}.content"))),
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Array(blocks)) => {
                for (j, block) in blocks.iter().enumerate() {
                    check_block(block, &format!("messages.{i}.content.{j}"))?;
                }
                blocks.is_empty()
            }
            Some(_) => return Err(invalid_request(format!("messages.{i}.content: Input should be a valid string or list"))),
        };
        if empty && !(i == last && role == "assistant") {
            return Err(invalid_request(format!(
                "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
            )));
        }
    }
    Ok(messages)
}

fn check_system(system: Option<&Value>) -> Result<(), AnthropicError> {
    match system {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(blocks)) => blocks.iter().enumerate().try_for_each(|(i, b)| {
            if b.get("type").and_then(Value::as_str) != Some("text") {
                return Err(invalid_request(format!("system.{i}.type: Input should be 'text'")));
            }
            check_block(b, &format!("system.{i}"))
        }),
        Some(_) => Err(invalid_request("system: Input should be a valid string or list")),
    }
}

/// The tool names, in order.
fn check_tools(tools: Option<&Value>) -> Result<Vec<String>, AnthropicError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(invalid_request("tools: Input should be a valid list")),
    };
    let mut names = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if !tool.is_object() {
            return Err(invalid_request(format!("tools.{i}: Input should be a valid dictionary")));
        }
        let name = match tool.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            None | Some(Value::Null) => return Err(missing(&format!("tools.{i}.name"))),
            Some(_) => return Err(invalid_request(format!("tools.{i}.name: String should have at least 1 character"))),
        };
        // Custom tools need a schema; server tools (`web_search_…`) do not.
        let custom = matches!(tool.get("type").and_then(Value::as_str), None | Some("custom"));
        if custom && !tool.get("input_schema").is_some_and(Value::is_object) {
            return Err(missing(&format!("tools.{i}.input_schema")));
        }
        names.push(name);
    }
    Ok(names)
}

/// How `tool_choice` constrains the answer.
#[derive(Debug, Clone, PartialEq)]
enum ToolChoice {
    Auto,
    Any,
    Tool(String),
    None,
}

fn check_tool_choice(choice: Option<&Value>, tool_names: &[String]) -> Result<ToolChoice, AnthropicError> {
    let choice = match choice {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(c @ Value::Object(_)) => c,
        Some(_) => return Err(invalid_request("tool_choice: Input should be a valid dictionary")),
    };
    let parsed = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Any,
        Some("none") => ToolChoice::None,
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Tool(name.to_owned()),
            None => return Err(missing("tool_choice.tool.name")),
        },
        _ => return Err(invalid_request("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")),
    };
    if tool_names.is_empty() && matches!(parsed, ToolChoice::Any | ToolChoice::Tool(_)) {
        return Err(invalid_request("tool_choice may only be specified while providing tools."));
    }
    if let ToolChoice::Tool(name) = &parsed {
        if !tool_names.contains(name) {
            return Err(invalid_request(format!("Tool '{name}' not found in provided tools")));
        }
    }
    Ok(parsed)
}

fn check_optional(req: &MessagesRequest) -> Result<Vec<String>, AnthropicError> {
    let stop_sequences = match &req.stop_sequences {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Some(_) => return Err(invalid_request("stop_sequences: Input should be a valid list of strings")),
    };
    match &req.temperature {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)) => {}
        Some(Value::Number(_)) => return Err(invalid_request("temperature: Input should be between 0 and 1")),
        Some(_) => return Err(invalid_request("temperature: Input should be a valid number")),
    }
    match &req.stream {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => return Err(invalid_request("stream: Input should be a valid boolean")),
    }
    match &req.metadata {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(invalid_request("metadata: Input should be a valid dictionary")),
    }
    Ok(stop_sequences)
}

// ---------------------------------------------------------------- planning

/// What the fake answers.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Text(String),
    /// `json` is the (possibly cut) input JSON streamed as `partial_json`;
    /// `input` the input object (`{}` when cut).
    ToolUse {
        name: String,
        input: Value,
        json: String,
    },
}

#[derive(Debug, Clone)]
struct Plan {
    model: String,
    stream: bool,
    answer: Answer,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: Usage,
}

fn plan_message(req: &MessagesRequest) -> Result<Plan, AnthropicError> {
    let model = require_model(req.model.as_ref())?;
    let limit = require_max_tokens(req.max_tokens.as_ref())?;
    let messages = check_messages(req.messages.as_ref())?;
    check_system(req.system.as_ref())?;
    let tool_names = check_tools(req.tools.as_ref())?;
    let tool_choice = check_tool_choice(req.tool_choice.as_ref(), &tool_names)?;
    let stop_sequences = check_optional(req)?;

    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(user_text)
        .unwrap_or_default();
    let tool = match (&tool_choice, tool_names.first()) {
        (ToolChoice::None, _) | (_, None) => None,
        (ToolChoice::Tool(name), Some(_)) => Some(name.clone()),
        (ToolChoice::Any, Some(first)) => Some(first.clone()),
        (ToolChoice::Auto, Some(first)) => last_user.to_lowercase().contains("tool").then(|| first.clone()),
    };

    let (answer, output_tokens, stop_reason, stop_sequence) = match tool {
        Some(name) => {
            let full = tool_use_tokens(TOOL_INPUT);
            if limit < full {
                let json = take_chars(TOOL_INPUT, limit.saturating_sub(TOOL_USE_EXTRA_TOKENS).saturating_mul(4));
                (Answer::ToolUse { name, input: json!({}), json }, limit, "max_tokens", None)
            } else {
                let input = serde_json::from_str(TOOL_INPUT).unwrap_or_else(|_| json!({}));
                (Answer::ToolUse { name, input, json: TOOL_INPUT.to_owned() }, full, "tool_use", None)
            }
        }
        None => {
            let mut text = reply_text(&last_user);
            let mut stop: (&'static str, Option<String>) = ("end_turn", None);
            let earliest = stop_sequences.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str()).map(|at| (at, s))).min();
            if let Some((at, sequence)) = earliest {
                text.truncate(at);
                stop = ("stop_sequence", Some(sequence.clone()));
            }
            let tokens = tokens_for(&text);
            if limit < tokens {
                (Answer::Text(take_chars(&text, limit.saturating_mul(4))), limit, "max_tokens", None)
            } else {
                (Answer::Text(text), tokens, stop.0, stop.1)
            }
        }
    };
    let cached = uses_prompt_cache(req.system.as_ref(), messages, req.tools.as_ref());
    let usage = Usage {
        input_tokens: input_tokens(req.system.as_ref(), messages),
        output_tokens,
        cache_creation_input_tokens: if cached { CACHE_CREATION_TOKENS } else { 0 },
        cache_read_input_tokens: if cached { CACHE_READ_TOKENS } else { 0 },
    };
    Ok(Plan { model, stream: req.stream == Some(Value::Bool(true)), answer, stop_reason, stop_sequence, usage })
}

// ---------------------------------------------------------------- handlers

async fn create_message(
    info: Option<Extension<RequestInfo>>,
    controls: Option<Extension<ScriptControls>>,
    body: Bytes,
) -> Result<Response, AnthropicError> {
    let seq = info.map_or(0, |Extension(i)| i.seq);
    let controls = controls.map(|Extension(c)| c).unwrap_or_default();
    let plan = plan_message(&parse_body(&body)?)?;
    let id = format!("msg_fake_{seq}");
    if plan.stream {
        return Ok(sse_response(stream_events(&id, &plan, !controls.omit_usage)));
    }
    let block = match &plan.answer {
        Answer::Text(text) => ContentBlock::Text { text: text.clone() },
        Answer::ToolUse { name, input, .. } => {
            ContentBlock::ToolUse { id: TOOL_USE_ID.to_owned(), name: name.clone(), input: input.clone() }
        }
    };
    Ok(Json(Message {
        id,
        kind: "message",
        role: "assistant",
        model: plan.model,
        content: vec![block],
        stop_reason: Some(plan.stop_reason),
        stop_sequence: plan.stop_sequence,
        usage: plan.usage,
    })
    .into_response())
}

/// The events of a streamed answer, in order.
fn stream_events(id: &str, plan: &Plan, with_usage: bool) -> Vec<StreamEvent> {
    let start_usage = Usage { output_tokens: START_OUTPUT_TOKENS, ..plan.usage };
    let mut events = vec![StreamEvent::MessageStart {
        message: Message {
            id: id.to_owned(),
            kind: "message",
            role: "assistant",
            model: plan.model.clone(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: start_usage,
        },
    }];
    let delta_usage = |output_tokens: u64| with_usage.then_some(DeltaUsage { output_tokens });
    match &plan.answer {
        Answer::Text(text) => {
            events.push(StreamEvent::ContentBlockStart { index: 0, content_block: ContentBlock::Text { text: String::new() } });
            events.push(StreamEvent::Ping);
            let pieces = split_chars(text, STREAM_CHUNK_CHARS);
            let midway = (pieces.len() > 2).then_some(pieces.len() / 2);
            let mut so_far = String::new();
            for (i, piece) in pieces.into_iter().enumerate() {
                so_far.push_str(&piece);
                events.push(StreamEvent::ContentBlockDelta { index: 0, delta: BlockDelta::TextDelta { text: piece } });
                if midway == Some(i + 1) {
                    events.push(StreamEvent::MessageDelta {
                        delta: MessageDeltaBody { stop_reason: None, stop_sequence: None },
                        usage: delta_usage(tokens_for(&so_far)),
                    });
                }
            }
        }
        Answer::ToolUse { name, json, .. } => {
            events.push(StreamEvent::ContentBlockStart {
                index: 0,
                content_block: ContentBlock::ToolUse { id: TOOL_USE_ID.to_owned(), name: name.clone(), input: json!({}) },
            });
            events.push(StreamEvent::Ping);
            for piece in split_chars(json, STREAM_CHUNK_CHARS) {
                events.push(StreamEvent::ContentBlockDelta { index: 0, delta: BlockDelta::InputJsonDelta { partial_json: piece } });
            }
        }
    }
    events.push(StreamEvent::ContentBlockStop { index: 0 });
    events.push(StreamEvent::MessageDelta {
        delta: MessageDeltaBody { stop_reason: Some(plan.stop_reason), stop_sequence: plan.stop_sequence.clone() },
        usage: delta_usage(plan.usage.output_tokens),
    });
    events.push(StreamEvent::MessageStop);
    events
}

/// `event: <type>\ndata: <json>\n\n`
fn sse_frame(event: &StreamEvent) -> String {
    match serde_json::to_string(event) {
        Ok(json) => format!("event: {}\ndata: {json}\n\n", event.name()),
        Err(_) => String::new(),
    }
}

/// One body write per event.
fn sse_response(events: Vec<StreamEvent>) -> Response {
    let frames: Vec<String> = events.iter().map(sse_frame).collect();
    let stream = futures::stream::iter(frames.into_iter().map(|f| Ok::<Bytes, Infallible>(Bytes::from(f))));
    (
        [(CONTENT_TYPE, HeaderValue::from_static("text/event-stream")), (CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `POST /v1/messages/count_tokens`: the request's [`input_tokens`]
/// (`max_tokens` not needed).
async fn count_tokens(body: Bytes) -> Result<Json<TokenCount>, AnthropicError> {
    let req = parse_body(&body)?;
    require_model(req.model.as_ref())?;
    let messages = check_messages(req.messages.as_ref())?;
    check_system(req.system.as_ref())?;
    let tool_names = check_tools(req.tools.as_ref())?;
    check_tool_choice(req.tool_choice.as_ref(), &tool_names)?;
    Ok(Json(TokenCount { input_tokens: input_tokens(req.system.as_ref(), messages) }))
}

// ------------------------------------------------------------------ models

fn model_info((id, display_name, created_at): (&'static str, &'static str, &'static str)) -> ModelInfo {
    ModelInfo { kind: "model", id, display_name, created_at }
}

async fn list_models() -> Json<ModelList> {
    Json(ModelList {
        data: MODELS.into_iter().map(model_info).collect(),
        has_more: false,
        first_id: MODELS.first().map(|m| m.0),
        last_id: MODELS.last().map(|m| m.0),
    })
}

async fn get_model(Path(id): Path<String>) -> Response {
    match MODELS.into_iter().find(|(m, _, _)| *m == id) {
        Some(entry) => Json(model_info(entry)).into_response(),
        None => AnthropicError::new(StatusCode::NOT_FOUND, "not_found_error", format!("model: {id}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(body: Value) -> Result<Plan, AnthropicError> {
        plan_message(&serde_json::from_value(body).expect("request"))
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn token_math() {
        let messages = [
            json!({"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image", "source": {}}]}),
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {"a": 1}}]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "12345"}]}),
        ];
        // system 2, "Hi" 1, {"a":1} 2, "12345" 2, 3 per message.
        assert_eq!(input_tokens(Some(&json!("Be brief")), &messages), 2 + 1 + 2 + 2 + 9);
        assert_eq!(input_tokens(Some(&json!([{"type": "text", "text": "Be brief"}])), &messages), 2 + 1 + 2 + 2 + 9);
        assert_eq!(input_tokens(None, &messages[..1]), 1 + 3);
        assert_eq!(tool_use_tokens(TOOL_INPUT), 4 + 10);
        assert_eq!(user_text(&messages[2]["content"]), "");
    }

    #[test]
    fn answers_and_limits() {
        let p = plan(json!({"model": "m", "max_tokens": 100, "messages": [user("hello")]})).expect("plan");
        assert_eq!(p.answer, Answer::Text(reply_text("hello")));
        assert_eq!((p.stop_reason, p.usage.output_tokens), ("end_turn", tokens_for(&reply_text("hello"))));
        let p = plan(json!({"model": "m", "max_tokens": 3, "messages": [user("hello")]})).expect("plan");
        assert_eq!(p.answer, Answer::Text(REPLY_PREFIX.chars().take(12).collect()));
        assert_eq!((p.stop_reason, p.usage.output_tokens), ("max_tokens", 3));
        let p =
            plan(json!({"model": "m", "max_tokens": 100, "messages": [user("hello")], "stop_sequences": ["fake", "You"]})).expect("plan");
        assert_eq!(p.answer, Answer::Text("Hello from the ".into()));
        assert_eq!((p.stop_reason, p.stop_sequence.as_deref()), ("stop_sequence", Some("fake")));
        let tools = json!([{"name": "search", "input_schema": {"type": "object"}}, {"name": "other", "input_schema": {}}]);
        let p = plan(json!({"model": "m", "max_tokens": 12, "messages": [user("use a TOOL")], "tools": tools})).expect("plan");
        assert_eq!(p.answer, Answer::ToolUse { name: "search".into(), input: json!({}), json: r#"{"query""#.into() });
        assert_eq!((p.stop_reason, p.usage.output_tokens), ("max_tokens", 12));
        let p = plan(json!({"model": "m", "max_tokens": 9, "messages": [user("hi")], "tools": tools,
                            "tool_choice": {"type": "tool", "name": "other"}}))
        .expect("plan");
        assert!(matches!(p.answer, Answer::ToolUse { ref name, ref json, .. } if name == "other" && json.is_empty()));
        let p = plan(json!({"model": "m", "max_tokens": 99, "messages": [user("tool")], "tools": tools, "tool_choice": {"type": "none"}}))
            .expect("plan");
        assert_eq!(p.answer, Answer::Text(reply_text("tool")));
    }

    #[test]
    fn stream_usage_is_cumulative() {
        let p = plan(json!({"model": "m", "max_tokens": 100, "messages": [user("hello there")]})).expect("plan");
        let events = stream_events("msg", &p, true);
        let deltas: Vec<Option<u64>> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::MessageDelta { usage, .. } => Some(usage.map(|u| u.output_tokens)),
                _ => None,
            })
            .collect();
        assert_eq!(deltas.len(), 2);
        assert!(deltas[0] < deltas[1]);
        assert_eq!(deltas[1], Some(p.usage.output_tokens));
        let without: Vec<String> = stream_events("msg", &p, false).iter().map(sse_frame).collect();
        assert!(without.iter().filter(|f| f.starts_with("event: message_delta")).all(|f| !f.contains("usage")));
    }

    #[test]
    fn error_body_by_status() {
        let cases = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (503, "api_error"),
            (529, "overloaded_error"),
        ];
        for (status, kind) in cases {
            let body = error_body(StatusCode::from_u16(status).expect("status"));
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], kind, "{status}");
        }
        assert_eq!(error_body(StatusCode::from_u16(529).expect("status"))["error"]["message"], "Overloaded");
        assert_eq!(error_body(StatusCode::TOO_MANY_REQUESTS)["error"]["message"], "Too Many Requests");
    }
}
