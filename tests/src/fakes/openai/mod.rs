//! Fake of the OpenAI API (also mounted as OpenRouter's OpenAI-compatible
//! API): chat completions (plain, streamed, tool calls), legacy
//! completions, embeddings and models, with deterministic answers and
//! token counts.
//!
//! Answers: the reply is [`reply_text`] of the last user message, unless
//! that message contains `tool` (any case) and `tools` were given: then one
//! call of the first tool (`id` [`TOOL_CALL_ID`], arguments
//! [`TOOL_ARGUMENTS`]). Tokens: [`tokens_for`] of each text (chars / 4,
//! rounded up), plus [`TOKENS_PER_MESSAGE`] per chat message; a lower
//! `max_tokens` / `max_completion_tokens` cuts the answer to that many
//! tokens (4 chars each) with `finish_reason: "length"`.

pub mod wire;

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::script::ScriptControls;
use super::{now_secs, AppState, RequestInfo};
use wire::*;

/// Start of every chat / completion answer.
pub const REPLY_PREFIX: &str = "Hello from the fake OpenAI. You said: ";
/// How much of the user's text the answer quotes (chars).
pub const QUOTE_CHARS: usize = 40;
/// Id of the (only) tool call.
pub const TOOL_CALL_ID: &str = "call_fake_1";
/// Arguments of the tool call.
pub const TOOL_ARGUMENTS: &str = r#"{"query":"fake"}"#;
/// Prompt tokens added per chat message.
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Chars per streamed text chunk.
pub const STREAM_CHUNK_CHARS: usize = 8;
/// Embedding length when the request gives no `dimensions`.
pub const DEFAULT_EMBEDDING_DIMENSIONS: usize = 8;
const MAX_EMBEDDING_DIMENSIONS: u64 = 3072;
const SYSTEM_FINGERPRINT: &str = "fp_fake";

/// Models listed by `GET /v1/models`: (id, created).
pub const MODELS: [(&str, u64); 4] =
    [("gpt-4o-mini", 1_721_172_741), ("gpt-4o", 1_715_367_049), ("gpt-4.1-mini", 1_744_318_173), ("text-embedding-3-small", 1_705_948_997)];

// ------------------------------------------------------------------ routes

/// The OpenAI-compatible API, paths relative to the mount (`/v1/...`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions).fallback(unknown_url))
        .route("/v1/completions", post(completions).fallback(unknown_url))
        .route("/v1/embeddings", post(embeddings).fallback(unknown_url))
        .route("/v1/models", get(list_models).fallback(unknown_url))
        .route("/v1/models/{*id}", get(get_model).fallback(unknown_url))
        .route_layer(from_fn(require_bearer))
        .fallback(unknown_url)
}

/// Only the OpenAI-shaped 404 (for `/openrouter/*` outside `/api`).
pub fn unknown_url_routes() -> Router<AppState> {
    Router::new().fallback(unknown_url)
}

// ------------------------------------------------------------------ errors

/// An OpenAI error answer: status and `{"error":{…}}` body.
#[derive(Debug, Clone)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

impl OpenAiError {
    pub fn new(status: StatusCode, message: impl Into<String>, kind: &str, param: Option<&str>, code: Option<&str>) -> Self {
        Self {
            status,
            detail: ErrorDetail {
                message: message.into(),
                kind: kind.to_owned(),
                param: param.map(str::to_owned),
                code: code.map(str::to_owned),
            },
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.detail })).into_response()
    }
}

/// A 400 `invalid_request_error`.
fn invalid_request(message: impl Into<String>, param: Option<&str>, code: Option<&str>) -> OpenAiError {
    OpenAiError::new(StatusCode::BAD_REQUEST, message, "invalid_request_error", param, code)
}

/// The OpenAI error body for `status` (scripted failures without a body).
pub fn error_body(status: StatusCode) -> Value {
    let (message, kind, code) = match status.as_u16() {
        400 => ("Bad request.", "invalid_request_error", None),
        401 => ("Incorrect API key provided.", "authentication_error", Some("invalid_api_key")),
        403 => ("You are not allowed to access this resource.", "invalid_request_error", None),
        404 => ("The requested resource does not exist.", "invalid_request_error", None),
        429 => ("Rate limit reached for requests. Please try again later.", "rate_limit_error", Some("rate_limit_exceeded")),
        500..=599 => ("The server had an error while processing your request. Sorry about that!", "server_error", None),
        _ => ("The request failed.", "invalid_request_error", None),
    };
    let body =
        ErrorBody { error: ErrorDetail { message: message.to_owned(), kind: kind.to_owned(), param: None, code: code.map(str::to_owned) } };
    serde_json::to_value(body).unwrap_or(Value::Null)
}

async fn unknown_url(method: Method, uri: Uri) -> OpenAiError {
    OpenAiError::new(
        StatusCode::NOT_FOUND,
        format!("Unknown request URL: {method} {}", uri.path()),
        "invalid_request_error",
        None,
        Some("unknown_url"),
    )
}

// -------------------------------------------------------------- middleware

fn has_bearer(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
}

async fn require_bearer(req: Request, next: Next) -> Response {
    if has_bearer(req.headers()) {
        return next.run(req).await;
    }
    OpenAiError::new(
        StatusCode::UNAUTHORIZED,
        "You didn't provide an API key. You need to provide your API key in an \
         Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        "authentication_error",
        None,
        Some("invalid_api_key"),
    )
    .into_response()
}

// ----------------------------------------------------------------- helpers

/// Tokens of a text: its chars / 4, rounded up.
pub fn tokens_for(text: &str) -> u64 {
    u64::try_from(text.chars().count().div_ceil(4)).unwrap_or(u64::MAX)
}

/// The answer to a user message: [`REPLY_PREFIX`] + its first
/// [`QUOTE_CHARS`] chars.
pub fn reply_text(user_text: &str) -> String {
    let quoted: String = user_text.chars().take(QUOTE_CHARS).collect();
    format!("{REPLY_PREFIX}{quoted}")
}

/// Text of a message `content`: the string, or the `text` of its parts.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// Prompt tokens of chat `messages`: per message, [`tokens_for`] its
/// content text + [`TOKENS_PER_MESSAGE`].
pub fn prompt_tokens(messages: &[Value]) -> u64 {
    messages.iter().map(|m| tokens_for(&m.get("content").map(content_text).unwrap_or_default()) + TOKENS_PER_MESSAGE).sum()
}

fn take_chars(text: &str, n: u64) -> String {
    text.chars().take(usize::try_from(n).unwrap_or(usize::MAX)).collect()
}

/// Cuts `text` to `limit` tokens: (text, tokens, cut?).
fn cap(text: String, limit: Option<u64>) -> (String, u64, bool) {
    let full = tokens_for(&text);
    match limit {
        Some(limit) if limit < full => (take_chars(&text, limit.saturating_mul(4)), limit, true),
        _ => (text, full, false),
    }
}

fn split_chars(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A 400 `invalid_type` for `param`.
fn invalid_type(param: &str, expected: &str, got: &Value) -> OpenAiError {
    invalid_request(
        format!("Invalid type for '{param}': expected {expected}, but got {} instead.", type_name(got)),
        Some(param),
        Some("invalid_type"),
    )
}

/// Parses the body as a JSON object into `T`; the OpenAI 400 otherwise.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, OpenAiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        invalid_request(
            "We could not parse the JSON body of your request. (HINT: This likely means \
             you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
             payload, but what was sent was not valid JSON.)",
            None,
            None,
        )
    })?;
    if !value.is_object() {
        return Err(invalid_request(
            format!("Invalid type for request body: expected an object, but got {} instead.", type_name(&value)),
            None,
            Some("invalid_type"),
        ));
    }
    serde_json::from_value(value).map_err(|e| invalid_request(format!("Invalid request body: {e}"), None, Some("invalid_type")))
}

fn require_model(model: Option<&Value>) -> Result<String, OpenAiError> {
    match model {
        None | Some(Value::Null) => Err(invalid_request("you must provide a model parameter", None, None)),
        Some(Value::String(s)) if s.is_empty() => Err(invalid_request("you must provide a model parameter", None, None)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(invalid_type("model", "a string", other)),
    }
}

/// `max_tokens`-like limit: absent/null, or an integer >= 1.
fn token_limit(value: Option<&Value>, name: &str) -> Result<Option<u64>, OpenAiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            Some(_) => Err(invalid_request(
                format!("Invalid '{name}': integer below minimum value. Expected a value >= 1, but got 0 instead."),
                Some(name),
                Some("integer_below_min_value"),
            )),
            None => Err(invalid_type(name, "an integer", v)),
        },
    }
}

fn sse_response(events: Vec<String>) -> Response {
    let stream = futures::stream::iter(events.into_iter().map(|event| Ok::<Bytes, Infallible>(Bytes::from(event))));
    (
        [(CONTENT_TYPE, HeaderValue::from_static("text/event-stream")), (CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Body::from_stream(stream),
    )
        .into_response()
}

fn sse_event<T: serde::Serialize>(chunk: &T) -> String {
    match serde_json::to_string(chunk) {
        Ok(json) => format!("data: {json}\n\n"),
        Err(_) => String::new(),
    }
}

const SSE_DONE: &str = "data: [DONE]\n\n";

// -------------------------------------------------------- chat completions

/// What the fake answers to a chat request.
#[derive(Debug, Clone, PartialEq)]
enum ChatAnswer {
    Text(String),
    ToolCall { name: String, arguments: String },
}

#[derive(Debug, Clone)]
struct ChatPlan {
    answer: ChatAnswer,
    finish_reason: &'static str,
    usage: Usage,
}

fn plan_chat(req: &ChatCompletionRequest) -> Result<(String, ChatPlan), OpenAiError> {
    let model = require_model(req.model.as_ref())?;
    let messages = match &req.messages {
        None | Some(Value::Null) => {
            return Err(invalid_request("Missing required parameter: 'messages'.", Some("messages"), Some("missing_required_parameter")))
        }
        Some(Value::Array(messages)) => messages,
        Some(other) => return Err(invalid_type("messages", "an array of objects", other)),
    };
    if messages.is_empty() {
        return Err(invalid_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        if !m.is_object() {
            return Err(invalid_type(&format!("messages[{i}]"), "an object", m));
        }
        if !m.get("role").is_some_and(Value::is_string) {
            return Err(invalid_request(
                format!("Missing required parameter: 'messages[{i}].role'."),
                Some(&format!("messages[{i}].role")),
                Some("missing_required_parameter"),
            ));
        }
    }
    let mut tool_names = Vec::new();
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        match tool.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => tool_names.push(name.to_owned()),
            None => {
                return Err(invalid_request(
                    format!("Missing required parameter: 'tools[{i}].function.name'."),
                    Some(&format!("tools[{i}].function.name")),
                    Some("missing_required_parameter"),
                ))
            }
        }
    }
    let limit = match token_limit(req.max_completion_tokens.as_ref(), "max_completion_tokens")? {
        Some(n) => Some(n),
        None => token_limit(req.max_tokens.as_ref(), "max_tokens")?,
    };

    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    let wants_tool = last_user.to_lowercase().contains("tool");
    let (answer, completion_tokens, cut) = match tool_names.first() {
        Some(name) if wants_tool => {
            let (arguments, tokens, cut) = cap(TOOL_ARGUMENTS.to_owned(), limit);
            (ChatAnswer::ToolCall { name: name.clone(), arguments }, tokens, cut)
        }
        _ => {
            let (text, tokens, cut) = cap(reply_text(&last_user), limit);
            (ChatAnswer::Text(text), tokens, cut)
        }
    };
    let finish_reason = match (&answer, cut) {
        (_, true) => "length",
        (ChatAnswer::ToolCall { .. }, false) => "tool_calls",
        (ChatAnswer::Text(_), false) => "stop",
    };
    Ok((model, ChatPlan { answer, finish_reason, usage: Usage::new(prompt_tokens(messages), completion_tokens) }))
}

async fn chat_completions(
    info: Option<Extension<RequestInfo>>,
    controls: Option<Extension<ScriptControls>>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let seq = info.map_or(0, |Extension(i)| i.seq);
    let controls = controls.map(|Extension(c)| c).unwrap_or_default();
    let req: ChatCompletionRequest = parse_body(&body)?;
    let (model, plan) = plan_chat(&req)?;
    let id = format!("chatcmpl-fake-{seq}");
    let created = now_secs();
    if req.stream == Some(true) {
        let include_usage = req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
        let events = chat_stream_events(&id, created, &model, &plan, include_usage, !controls.omit_usage);
        return Ok(sse_response(events));
    }
    let message = match plan.answer {
        ChatAnswer::Text(text) => AssistantMessage { role: "assistant", content: Some(text), refusal: None, tool_calls: None },
        ChatAnswer::ToolCall { name, arguments } => AssistantMessage {
            role: "assistant",
            content: None,
            refusal: None,
            tool_calls: Some(vec![ToolCall { id: TOOL_CALL_ID.to_owned(), kind: "function", function: FunctionCall { name, arguments } }]),
        },
    };
    Ok(Json(ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model,
        choices: vec![ChatChoice { index: 0, message, logprobs: None, finish_reason: plan.finish_reason }],
        usage: plan.usage,
        service_tier: "default",
        system_fingerprint: SYSTEM_FINGERPRINT,
    })
    .into_response())
}

/// The SSE events of a streamed chat answer, `[DONE]` included.
fn chat_stream_events(id: &str, created: u64, model: &str, plan: &ChatPlan, include_usage: bool, send_usage_chunk: bool) -> Vec<String> {
    let usage_field = include_usage.then_some(None);
    let chunk = |delta: Delta, finish_reason: Option<&'static str>| ChatCompletionChunk {
        id: id.to_owned(),
        object: "chat.completion.chunk",
        created,
        model: model.to_owned(),
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices: vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason }],
        usage: usage_field,
    };
    let mut events = Vec::new();
    match &plan.answer {
        ChatAnswer::Text(text) => {
            events.push(sse_event(&chunk(Delta { role: Some("assistant"), content: Some(Some(String::new())), tool_calls: None }, None)));
            for piece in split_chars(text, STREAM_CHUNK_CHARS) {
                events.push(sse_event(&chunk(Delta { content: Some(Some(piece)), ..Delta::default() }, None)));
            }
        }
        ChatAnswer::ToolCall { name, arguments } => {
            events.push(sse_event(&chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(None),
                    tool_calls: Some(vec![ToolCallDelta {
                        index: 0,
                        id: Some(TOOL_CALL_ID.to_owned()),
                        kind: Some("function"),
                        function: FunctionCallDelta { name: Some(name.clone()), arguments: String::new() },
                    }]),
                },
                None,
            )));
            for piece in split_chars(arguments, STREAM_CHUNK_CHARS) {
                events.push(sse_event(&chunk(
                    Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: 0,
                            id: None,
                            kind: None,
                            function: FunctionCallDelta { name: None, arguments: piece },
                        }]),
                        ..Delta::default()
                    },
                    None,
                )));
            }
        }
    }
    events.push(sse_event(&chunk(Delta::default(), Some(plan.finish_reason))));
    if include_usage && send_usage_chunk {
        events.push(sse_event(&ChatCompletionChunk {
            id: id.to_owned(),
            object: "chat.completion.chunk",
            created,
            model: model.to_owned(),
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices: Vec::new(),
            usage: Some(Some(plan.usage)),
        }));
    }
    events.push(SSE_DONE.to_owned());
    events
}

// ------------------------------------------------------ legacy completions

async fn completions(
    info: Option<Extension<RequestInfo>>,
    controls: Option<Extension<ScriptControls>>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let seq = info.map_or(0, |Extension(i)| i.seq);
    let controls = controls.map(|Extension(c)| c).unwrap_or_default();
    let req: CompletionRequest = parse_body(&body)?;
    let model = require_model(req.model.as_ref())?;
    let prompts: Vec<String> = match &req.prompt {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => items.iter().map(content_text).collect(),
        None | Some(Value::Null) => {
            return Err(invalid_request("Missing required parameter: 'prompt'.", Some("prompt"), Some("missing_required_parameter")))
        }
        Some(other) => return Err(invalid_type("prompt", "a string or an array of strings", other)),
    };
    let limit = token_limit(req.max_tokens.as_ref(), "max_tokens")?;
    let mut prompt_total = 0;
    let mut completion_total = 0;
    let mut choices = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.iter().enumerate() {
        let (text, tokens, cut) = cap(reply_text(prompt), limit);
        prompt_total += tokens_for(prompt);
        completion_total += tokens;
        choices.push(TextChoice {
            text,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            logprobs: None,
            finish_reason: Some(if cut { "length" } else { "stop" }),
        });
    }
    let usage = Usage::new(prompt_total, completion_total);
    let id = format!("cmpl-fake-{seq}");
    let created = now_secs();
    let completion = |choices: Vec<TextChoice>, usage: Option<Option<Usage>>| TextCompletion {
        id: id.clone(),
        object: "text_completion",
        created,
        model: model.clone(),
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices,
        usage,
    };
    if req.stream != Some(true) {
        return Ok(Json(completion(choices, Some(Some(usage)))).into_response());
    }
    let include_usage = req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
    let usage_field = include_usage.then_some(None);
    let mut events = Vec::new();
    for choice in choices {
        for piece in split_chars(&choice.text, STREAM_CHUNK_CHARS) {
            events.push(sse_event(&completion(
                vec![TextChoice { text: piece, index: choice.index, logprobs: None, finish_reason: None }],
                usage_field,
            )));
        }
        events.push(sse_event(&completion(
            vec![TextChoice { text: String::new(), index: choice.index, logprobs: None, finish_reason: choice.finish_reason }],
            usage_field,
        )));
    }
    if include_usage && !controls.omit_usage {
        events.push(sse_event(&completion(Vec::new(), Some(Some(usage)))));
    }
    events.push(SSE_DONE.to_owned());
    Ok(sse_response(events))
}

// -------------------------------------------------------------- embeddings

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The deterministic unit-length embedding of `text`.
pub fn embedding_for(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state = fnv1a(text.as_bytes());
    let raw: Vec<f64> = (0..dimensions)
        .map(|_| {
            let bits = splitmix64(&mut state) >> 11;
            (bits as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    raw.iter().map(|x| if norm > 0.0 { x / norm } else { *x } as f32).collect()
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn embeddings(body: Bytes) -> Result<Response, OpenAiError> {
    let req: EmbeddingRequest = parse_body(&body)?;
    let model = require_model(req.model.as_ref())?;
    let inputs: Vec<String> = match &req.input {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) => {
            items.iter().map(content_text).collect()
        }
        None | Some(Value::Null) => {
            return Err(invalid_request("Missing required parameter: 'input'.", Some("input"), Some("missing_required_parameter")))
        }
        Some(_) => {
            return Err(invalid_request(
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                Some("input"),
                None,
            ))
        }
    };
    let dimensions = match &req.dimensions {
        None | Some(Value::Null) => DEFAULT_EMBEDDING_DIMENSIONS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_EMBEDDING_DIMENSIONS).contains(&n) => usize::try_from(n).unwrap_or(DEFAULT_EMBEDDING_DIMENSIONS),
            _ => {
                return Err(invalid_request(
                    format!("Invalid 'dimensions': expected an integer between 1 and {MAX_EMBEDDING_DIMENSIONS}."),
                    Some("dimensions"),
                    Some("invalid_value"),
                ))
            }
        },
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(invalid_request(
                format!("Invalid value for 'encoding_format': '{other}'. Supported values are: 'float' and 'base64'."),
                Some("encoding_format"),
                Some("invalid_value"),
            ))
        }
    };
    let tokens: u64 = inputs.iter().map(|s| tokens_for(s)).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embedding_for(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                EmbeddingVector::Base64(base64_encode(&bytes))
            } else {
                EmbeddingVector::Float(vector)
            };
            Embedding { object: "embedding", index: u32::try_from(index).unwrap_or(u32::MAX), embedding }
        })
        .collect();
    Ok(Json(EmbeddingList { object: "list", data, model, usage: EmbeddingUsage { prompt_tokens: tokens, total_tokens: tokens } })
        .into_response())
}

// ------------------------------------------------------------------ models

fn model_entry((id, created): (&'static str, u64)) -> Model {
    Model { id, object: "model", created, owned_by: "openai" }
}

async fn list_models() -> Json<ModelList> {
    Json(ModelList { object: "list", data: MODELS.into_iter().map(model_entry).collect() })
}

async fn get_model(Path(id): Path<String>) -> Response {
    match MODELS.into_iter().find(|(m, _)| *m == id) {
        Some(entry) => Json(model_entry(entry)).into_response(),
        None => OpenAiError::new(
            StatusCode::NOT_FOUND,
            format!("The model '{id}' does not exist"),
            "invalid_request_error",
            Some("model"),
            Some("model_not_found"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_math() {
        assert_eq!(tokens_for(""), 0);
        assert_eq!(tokens_for("abcd"), 1);
        assert_eq!(tokens_for("abcde"), 2);
        assert_eq!(tokens_for("ééééé"), 2);
        let messages = [
            json!({"role":"system","content":"You are helpful."}),
            json!({"role":"user","content":[{"type":"text","text":"Hi"}]}),
            json!({"role":"assistant","content":null}),
        ];
        assert_eq!(prompt_tokens(&messages), (4 + 3) + (1 + 3) + 3);
    }

    #[test]
    fn reply_quotes_forty_chars() {
        let long = "x".repeat(100);
        assert_eq!(reply_text(&long), format!("{REPLY_PREFIX}{}", "x".repeat(40)));
        assert_eq!(reply_text("hi"), format!("{REPLY_PREFIX}hi"));
    }

    #[test]
    fn cap_cuts_to_limit() {
        let (text, tokens, cut) = cap("abcdefghij".into(), Some(2));
        assert_eq!((text.as_str(), tokens, cut), ("abcdefgh", 2, true));
        let (text, tokens, cut) = cap("abcdefghij".into(), Some(3));
        assert_eq!((text.as_str(), tokens, cut), ("abcdefghij", 3, false));
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding_for("hello", 8);
        assert_eq!(a, embedding_for("hello", 8));
        assert_ne!(a, embedding_for("hello!", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn error_body_by_status() {
        let e = error_body(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e["error"]["type"], "rate_limit_error");
        assert_eq!(e["error"]["code"], "rate_limit_exceeded");
        assert_eq!(e["error"]["param"], Value::Null);
        assert_eq!(error_body(StatusCode::UNAUTHORIZED)["error"]["code"], "invalid_api_key");
        assert_eq!(error_body(StatusCode::BAD_REQUEST)["error"]["type"], "invalid_request_error");
        assert_eq!(error_body(StatusCode::BAD_GATEWAY)["error"]["type"], "server_error");
        assert_eq!(error_body(StatusCode::BAD_GATEWAY)["error"]["code"], Value::Null);
    }

    #[test]
    fn bearer_check() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!has_bearer(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(!has_bearer(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(!has_bearer(&h));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk-test"));
        assert!(has_bearer(&h));
    }
}
