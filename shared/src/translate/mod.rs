//! Translation between the OpenAI Chat Completions and Anthropic Messages wire
//! formats, requests, responses, errors and SSE streams included.
//!
//! The Worker does the I/O; everything here is pure `serde_json::Value` work
//! so it tests natively. Directions:
//!
//! * [`openai_to_anthropic`]: an OpenAI-shaped client talking to an Anthropic
//!   upstream (request OpenAI → Anthropic; response, error and stream
//!   Anthropic → OpenAI live in [`anthropic_to_openai`]).
//! * [`anthropic_to_openai`]: an Anthropic-shaped client talking to an
//!   OpenAI-compatible upstream (request Anthropic → OpenAI; response, error
//!   and stream OpenAI → Anthropic live in [`openai_to_anthropic`]).
//!
//! Each file is named after the shape it *reads*: `openai_to_anthropic.rs`
//! holds every function whose input is OpenAI-shaped.
//!
//! # Dropped or unsupported fields
//!
//! OpenAI request → Anthropic, silently dropped: `frequency_penalty`,
//! `presence_penalty`, `logit_bias`, `logprobs`, `top_logprobs`, `seed`,
//! `response_format`, `service_tier`, `store`, `metadata`, `modalities`,
//! `audio`, `prediction`, `reasoning_effort`, `verbosity`,
//! `web_search_options`, `stream_options` (read by the caller via
//! [`openai_include_usage`]), `function.strict`, `image_url.detail`, message
//! `name`, assistant `refusal`/`audio`. Rejected with [`TranslateError`]:
//! `n` > 1, legacy `functions`/`function_call`, `role:"function"`,
//! `input_audio` parts, non-PDF `file` parts, non-`function` tools, invalid
//! or non-object tool-call `arguments`.
//!
//! Anthropic request → OpenAI, silently dropped: `top_k`, `thinking`,
//! `service_tier`, `container`, `mcp_servers`, `cache_control` (everywhere),
//! `citations`, `thinking`/`redacted_thinking` blocks, `tool_result.is_error`,
//! `metadata` other than `user_id`. Rejected: server tools (any tool with a
//! `type` other than `custom`), `url`/`file` document sources,
//! `search_result`/`server_tool_use`/`*_tool_result` and other unknown blocks.

pub mod anthropic_to_openai;
pub mod openai_to_anthropic;
pub mod passthrough;
pub mod sse;
pub mod usage;

use serde_json::Value;

pub use anthropic_to_openai::{
    anthropic_error_to_openai, anthropic_message_to_openai_completion, anthropic_to_openai_chat, AnthropicToOpenAiStream,
};
pub use openai_to_anthropic::{
    openai_chat_to_anthropic, openai_completion_to_anthropic_message, openai_error_to_anthropic, OpenAiToAnthropicStream,
};
pub use passthrough::{AnthropicPassthrough, OpenAiPassthrough};
pub use sse::{encode_comment, encode_data, encode_event, SseEvent, SseParser, DONE};
pub use usage::{Usage, UsageTracker};

/// Input that cannot be expressed in the other format. The caller answers 400
/// (`invalid_request_error`) with [`TranslateError::message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    pub message: String,
}

impl TranslateError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranslateError {}

/// Whether an OpenAI request asked for the trailing usage chunk
/// (`stream_options.include_usage`).
pub fn openai_include_usage(req: &Value) -> bool {
    req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false)
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn anthropic_stop_to_openai_finish(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything newer.
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn openai_finish_to_anthropic_stop(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic error `type` for an HTTP status.
pub(crate) fn anthropic_error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Splits `data:<media type>;base64,<payload>`.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    if media_type.is_empty() {
        return None;
    }
    Some((media_type, payload))
}

/// Non-negative integer field (accepts integral floats such as `1024.0`).
pub(crate) fn u64_field(v: &Value, key: &str) -> Option<u64> {
    let f = v.get(key)?;
    f.as_u64().or_else(|| f.as_f64().filter(|x| *x >= 0.0 && x.fract() == 0.0 && *x <= u64::MAX as f64).map(|x| x as u64))
}

pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finish_reason_maps_both_ways() {
        assert_eq!(anthropic_stop_to_openai_finish("end_turn"), "stop");
        assert_eq!(anthropic_stop_to_openai_finish("stop_sequence"), "stop");
        assert_eq!(anthropic_stop_to_openai_finish("max_tokens"), "length");
        assert_eq!(anthropic_stop_to_openai_finish("tool_use"), "tool_calls");
        assert_eq!(anthropic_stop_to_openai_finish("refusal"), "content_filter");
        assert_eq!(openai_finish_to_anthropic_stop("stop"), "end_turn");
        assert_eq!(openai_finish_to_anthropic_stop("length"), "max_tokens");
        assert_eq!(openai_finish_to_anthropic_stop("tool_calls"), "tool_use");
        assert_eq!(openai_finish_to_anthropic_stop("content_filter"), "refusal");
    }

    #[test]
    fn data_urls_parse() {
        assert_eq!(parse_data_url("data:image/png;base64,iVBOR"), Some(("image/png", "iVBOR")));
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
        assert_eq!(parse_data_url("https://x/y.png"), None);
    }

    #[test]
    fn include_usage_flag() {
        assert!(openai_include_usage(&json!({"stream_options": {"include_usage": true}})));
        assert!(!openai_include_usage(&json!({"stream": true})));
    }

    #[test]
    fn u64_field_accepts_integral_floats_only() {
        assert_eq!(u64_field(&json!({"a": 5}), "a"), Some(5));
        assert_eq!(u64_field(&json!({"a": 5.0}), "a"), Some(5));
        assert_eq!(u64_field(&json!({"a": 5.5}), "a"), None);
        assert_eq!(u64_field(&json!({"a": -1}), "a"), None);
        assert_eq!(u64_field(&json!({"a": "5"}), "a"), None);
    }
}
