//! Same-format streams (OpenAI → OpenAI, Anthropic → Anthropic): events are
//! forwarded unchanged, usage is tracked on the way.

use serde_json::Value;

use super::sse::{encode_data, encode_event, SseEvent, DONE};
use super::usage::{Usage, UsageTracker};
use super::{str_field, u64_field};

/// OpenAI → OpenAI. The gateway always asks the upstream for
/// `include_usage`; when the client did not, `strip_usage` drops the trailing
/// usage-only chunk (`choices: []`). Every other chunk, `"usage": null`
/// members included, is forwarded byte for byte.
#[derive(Debug, Default)]
pub struct OpenAiPassthrough {
    pub strip_usage: bool,
    tracker: UsageTracker,
    output_chars: u64,
}

impl OpenAiPassthrough {
    pub fn new(strip_usage: bool) -> Self {
        Self { strip_usage, ..Self::default() }
    }

    /// The text to forward for one upstream event (possibly empty).
    pub fn push(&mut self, ev: &SseEvent) -> String {
        if ev.is_done() {
            return DONE.to_owned();
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&ev.data) else {
            // Not ours to judge: forward what the upstream said.
            return encode_data(&ev.data);
        };
        self.tracker.observe_openai_chunk(&chunk);
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten().filter(|c| u64_field(c, "index").unwrap_or(0) == 0) {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(t) = str_field(delta, "content") {
                self.output_chars += t.chars().count() as u64;
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                if let Some(a) = call.get("function").and_then(|f| str_field(f, "arguments")) {
                    self.output_chars += a.chars().count() as u64;
                }
            }
        }
        let usage_only = choices.is_none_or(Vec::is_empty) && chunk.get("usage").is_some_and(|u| !u.is_null());
        if self.strip_usage && usage_only {
            return String::new();
        }
        encode_data(&ev.data)
    }

    pub fn usage(&self) -> Option<Usage> {
        self.tracker.usage()
    }

    pub fn output_chars(&self) -> u64 {
        self.output_chars
    }
}

/// Anthropic → Anthropic: forwards every event re-encoded with its name and
/// tracks usage (`message_start` + cumulative `message_delta`).
#[derive(Debug, Default)]
pub struct AnthropicPassthrough {
    tracker: UsageTracker,
    output_chars: u64,
}

impl AnthropicPassthrough {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, ev: &SseEvent) -> String {
        let parsed = serde_json::from_str::<Value>(&ev.data).ok();
        let ty = parsed.as_ref().and_then(|v| str_field(v, "type")).map(str::to_owned);
        if let Some(v) = &parsed {
            let t = ty.as_deref().or(ev.event.as_deref()).unwrap_or("");
            self.tracker.observe_anthropic_event(t, v);
            if t == "content_block_delta" {
                let d = v.get("delta").unwrap_or(&Value::Null);
                if let Some(s) = str_field(d, "text").or_else(|| str_field(d, "partial_json")) {
                    self.output_chars += s.chars().count() as u64;
                }
            }
        }
        match ev.event.as_deref().or(ty.as_deref()) {
            Some(name) => encode_event(name, &ev.data),
            None => encode_data(&ev.data),
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.tracker.usage()
    }

    pub fn output_chars(&self) -> u64 {
        self.output_chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::sse::SseParser;

    const OPENAI_STREAM: &str = concat!(
        ": OPENROUTER PROCESSING\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    fn run(p: &mut OpenAiPassthrough) -> String {
        let mut parser = SseParser::new();
        parser.push(OPENAI_STREAM.as_bytes()).iter().map(|ev| p.push(ev)).collect()
    }

    #[test]
    fn openai_passthrough_keeps_usage_chunk_when_asked() {
        let mut p = OpenAiPassthrough::new(false);
        let out = run(&mut p);
        // Identical to the upstream minus the keep-alive comment.
        assert_eq!(out, OPENAI_STREAM.trim_start_matches(": OPENROUTER PROCESSING\n\n"));
        assert_eq!(p.usage().map(|u| (u.input_tokens, u.output_tokens)), Some((9, 1)));
        assert_eq!(p.output_chars(), 2);
    }

    #[test]
    fn openai_passthrough_strips_usage_chunk_but_tracks_it() {
        let mut p = OpenAiPassthrough::new(true);
        let out = run(&mut p);
        assert!(!out.contains("\"choices\":[]"));
        assert!(out.contains("\"usage\":null"), "null usage members are left untouched");
        assert!(out.ends_with(DONE));
        assert_eq!(p.usage().map(|u| u.total_tokens()), Some(10));
    }

    #[test]
    fn anthropic_passthrough_tracks_usage() {
        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":20,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"abc\"}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":12}}\n\n",
        );
        let mut p = AnthropicPassthrough::new();
        let out: String = SseParser::new().push(stream.as_bytes()).iter().map(|ev| p.push(ev)).collect();
        assert_eq!(out, stream);
        assert_eq!(p.usage(), Some(Usage { input_tokens: 25, output_tokens: 12, cached_input_tokens: 20, cache_creation_input_tokens: 0 }));
        assert_eq!(p.output_chars(), 3);
    }
}
