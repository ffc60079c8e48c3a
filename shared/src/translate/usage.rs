//! Token usage, normalised across OpenAI and Anthropic.
//!
//! OpenAI's `prompt_tokens` already includes cached tokens (broken out in
//! `prompt_tokens_details.cached_tokens`); Anthropic's `input_tokens` excludes
//! them (`cache_read_input_tokens` and `cache_creation_input_tokens` are
//! separate counters). [`Usage::input_tokens`] follows OpenAI: every prompt
//! token, cached or not.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::u64_field;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All prompt tokens, including cache reads and cache writes.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prompt tokens served from the cache (OpenAI `cached_tokens`,
    /// Anthropic `cache_read_input_tokens`).
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the cache (Anthropic
    /// `cache_creation_input_tokens`, OpenRouter `cache_write_tokens`).
    pub cache_creation_input_tokens: u64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Prompt tokens neither read from nor written to the cache (Anthropic's
    /// `input_tokens`).
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens.saturating_sub(self.cached_input_tokens).saturating_sub(self.cache_creation_input_tokens)
    }

    /// The OpenAI `usage` object.
    pub fn to_openai_json(&self) -> Value {
        json!({
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens(),
            "prompt_tokens_details": { "cached_tokens": self.cached_input_tokens },
        })
    }

    /// The Anthropic `usage` object.
    pub fn to_anthropic_json(&self) -> Value {
        json!({
            "input_tokens": self.uncached_input_tokens(),
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cached_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
        })
    }
}

/// Reads an OpenAI `usage` object (not the whole response). `None` when it is
/// null or carries no token counts.
pub fn from_openai(usage: &Value) -> Option<Usage> {
    if !usage.is_object() {
        return None;
    }
    let prompt = u64_field(usage, "prompt_tokens");
    let completion = u64_field(usage, "completion_tokens");
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    let details = usage.get("prompt_tokens_details").unwrap_or(&Value::Null);
    Some(Usage {
        input_tokens: prompt.unwrap_or(0),
        output_tokens: completion.unwrap_or(0),
        cached_input_tokens: u64_field(details, "cached_tokens").unwrap_or(0),
        cache_creation_input_tokens: u64_field(details, "cache_write_tokens").unwrap_or(0),
    })
}

/// Reads an Anthropic `usage` object (not the whole message).
pub fn from_anthropic(usage: &Value) -> Option<Usage> {
    let raw = AnthropicCounters::read(usage)?;
    Some(raw.usage())
}

/// Anthropic's four counters as sent (each may be absent in a delta).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AnthropicCounters {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl AnthropicCounters {
    fn read(usage: &Value) -> Option<Self> {
        let mut c = Self::default();
        c.merge(usage).then_some(c)
    }

    /// Overwrites every counter present in `usage` (values are cumulative).
    /// Returns whether any was present.
    fn merge(&mut self, usage: &Value) -> bool {
        let mut any = false;
        for (key, slot) in [
            ("input_tokens", &mut self.input),
            ("output_tokens", &mut self.output),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("cache_creation_input_tokens", &mut self.cache_creation),
        ] {
            if let Some(n) = u64_field(usage, key) {
                *slot = n;
                any = true;
            }
        }
        any
    }

    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input.saturating_add(self.cache_read).saturating_add(self.cache_creation),
            output_tokens: self.output,
            cached_input_tokens: self.cache_read,
            cache_creation_input_tokens: self.cache_creation,
        }
    }
}

/// Collects usage from a stream, whichever format it is in.
#[derive(Debug, Clone, Default)]
pub struct UsageTracker {
    openai: Option<Usage>,
    anthropic: Option<AnthropicCounters>,
}

impl UsageTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Any chunk whose `usage` is non-null counts; the last one wins (OpenAI
    /// sends one trailing usage chunk; some OpenRouter providers send running
    /// totals on several chunks).
    pub fn observe_openai_chunk(&mut self, chunk: &Value) {
        if let Some(u) = chunk.get("usage").and_then(from_openai) {
            self.openai = Some(u);
        }
    }

    /// `message_start` carries input, cache and initial output counts;
    /// `message_delta` usage is cumulative, so it replaces, never adds.
    pub fn observe_anthropic_event(&mut self, event_type: &str, data: &Value) {
        let usage = match event_type {
            "message_start" => data.get("message").and_then(|m| m.get("usage")),
            "message_delta" => data.get("usage"),
            _ => None,
        };
        let Some(usage) = usage else { return };
        let counters = self.anthropic.get_or_insert_with(AnthropicCounters::default);
        counters.merge(usage);
    }

    pub fn usage(&self) -> Option<Usage> {
        self.openai.or_else(|| self.anthropic.map(|c| c.usage()))
    }
}

/// A stand-in when the upstream reported nothing: ceil(chars / 4) each way.
/// The caller must flag the result as estimated.
pub fn estimate(request_chars: u64, response_chars: u64) -> Usage {
    Usage { input_tokens: request_chars.div_ceil(4), output_tokens: response_chars.div_ceil(4), ..Usage::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_usage_with_cached_tokens() {
        let u = json!({
            "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        });
        let got = from_openai(&u);
        assert_eq!(got, Some(Usage { input_tokens: 2006, output_tokens: 300, cached_input_tokens: 1920, cache_creation_input_tokens: 0 }));
        assert_eq!(got.map(|u| u.uncached_input_tokens()), Some(86));
    }

    #[test]
    fn openrouter_usage_with_cache_writes() {
        let u = json!({"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196, "cost": 0.95,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100, "audio_tokens": 0}});
        assert_eq!(
            from_openai(&u),
            Some(Usage { input_tokens: 194, output_tokens: 2, cached_input_tokens: 0, cache_creation_input_tokens: 100 })
        );
    }

    #[test]
    fn openai_null_or_empty_usage_is_none() {
        assert_eq!(from_openai(&Value::Null), None);
        assert_eq!(from_openai(&json!({})), None);
    }

    #[test]
    fn anthropic_usage_sums_all_prompt_tokens() {
        let u = json!({"input_tokens": 50, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1000,
            "output_tokens": 503, "service_tier": "standard"});
        let got = from_anthropic(&u);
        assert_eq!(
            got,
            Some(Usage { input_tokens: 1250, output_tokens: 503, cached_input_tokens: 1000, cache_creation_input_tokens: 200 })
        );
        assert_eq!(
            got.map(|u| u.to_anthropic_json()),
            Some(json!({"input_tokens": 50, "output_tokens": 503, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}))
        );
        assert_eq!(
            got.map(|u| u.to_openai_json()),
            Some(
                json!({"prompt_tokens": 1250, "completion_tokens": 503, "total_tokens": 1753, "prompt_tokens_details": {"cached_tokens": 1000}})
            )
        );
    }

    #[test]
    fn tracker_keeps_last_cumulative_anthropic_delta() {
        let mut t = UsageTracker::new();
        t.observe_anthropic_event(
            "message_start",
            &json!({"type": "message_start", "message": {"usage": {"input_tokens": 25, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1800, "output_tokens": 1}}}),
        );
        t.observe_anthropic_event("message_delta", &json!({"type": "message_delta", "usage": {"output_tokens": 10}}));
        t.observe_anthropic_event("message_delta", &json!({"type": "message_delta", "usage": {"output_tokens": 15}}));
        assert_eq!(
            t.usage(),
            Some(Usage { input_tokens: 1825, output_tokens: 15, cached_input_tokens: 1800, cache_creation_input_tokens: 0 })
        );
    }

    #[test]
    fn tracker_openai_last_non_null_wins() {
        let mut t = UsageTracker::new();
        assert_eq!(t.usage(), None);
        t.observe_openai_chunk(&json!({"choices": [], "usage": null}));
        assert_eq!(t.usage(), None);
        t.observe_openai_chunk(&json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}));
        t.observe_openai_chunk(&json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}));
        assert_eq!(t.usage().map(|u| (u.input_tokens, u.output_tokens)), Some((9, 4)));
    }

    #[test]
    fn estimate_rounds_up() {
        assert_eq!(estimate(0, 0), Usage::default());
        let e = estimate(9, 4);
        assert_eq!((e.input_tokens, e.output_tokens), (3, 1));
    }
}
