//! The model catalogue: which model ids (and aliases) we route, to which
//! upstreams in failover order, at what price.
//!
//! Prices are micro-USD per 1M tokens, so a price is also "USD per token × 10⁻⁶
//! × 10⁶": cost = tokens × price / 1_000_000, rounded up to the micro-USD.

use serde::Serialize;

/// The wire dialect an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    OpenAi,
    OpenRouter,
    Anthropic,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::OpenRouter => "openrouter",
            Provider::Anthropic => "anthropic",
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            Provider::Anthropic => Dialect::Anthropic,
            Provider::OpenAi | Provider::OpenRouter => Dialect::OpenAi,
        }
    }
}

/// One place a model can be served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Target {
    pub provider: Provider,
    pub upstream_model: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Price {
    pub input_per_m: i64,
    pub output_per_m: i64,
    pub cached_input_per_m: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Chat,
    Embedding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Model {
    pub id: &'static str,
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    /// Failover order.
    pub targets: &'static [Target],
    pub price: Price,
    /// Output tokens assumed when the request sets no `max_tokens`.
    pub default_max_output: u64,
    pub owned_by: &'static str,
}

const fn t(provider: Provider, upstream_model: &'static str) -> Target {
    Target { provider, upstream_model }
}

const fn p(input_per_m: i64, output_per_m: i64, cached_input_per_m: i64) -> Price {
    Price { input_per_m, output_per_m, cached_input_per_m }
}

use Provider::*;

pub const MODELS: &[Model] = &[
    Model {
        id: "gpt-4o-mini",
        aliases: &["openai/gpt-4o-mini"],
        kind: Kind::Chat,
        targets: &[t(OpenAi, "gpt-4o-mini"), t(OpenRouter, "openai/gpt-4o-mini")],
        price: p(150_000, 600_000, 75_000),
        default_max_output: 4_096,
        owned_by: "openai",
    },
    Model {
        id: "gpt-4o",
        aliases: &["openai/gpt-4o"],
        kind: Kind::Chat,
        targets: &[t(OpenAi, "gpt-4o"), t(OpenRouter, "openai/gpt-4o")],
        price: p(2_500_000, 10_000_000, 1_250_000),
        default_max_output: 4_096,
        owned_by: "openai",
    },
    Model {
        id: "gpt-4.1-mini",
        aliases: &["openai/gpt-4.1-mini"],
        kind: Kind::Chat,
        targets: &[t(OpenAi, "gpt-4.1-mini"), t(OpenRouter, "openai/gpt-4.1-mini")],
        price: p(400_000, 1_600_000, 100_000),
        default_max_output: 4_096,
        owned_by: "openai",
    },
    Model {
        id: "claude-sonnet-4-5",
        aliases: &["claude-sonnet-4.5", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4.5", "sonnet"],
        kind: Kind::Chat,
        targets: &[t(Anthropic, "claude-sonnet-4-5"), t(OpenRouter, "anthropic/claude-sonnet-4.5")],
        price: p(3_000_000, 15_000_000, 300_000),
        default_max_output: 4_096,
        owned_by: "anthropic",
    },
    Model {
        id: "claude-haiku-4-5",
        aliases: &["claude-haiku-4.5", "anthropic/claude-haiku-4.5", "haiku"],
        kind: Kind::Chat,
        targets: &[t(Anthropic, "claude-haiku-4-5"), t(OpenRouter, "anthropic/claude-haiku-4.5")],
        price: p(1_000_000, 5_000_000, 100_000),
        default_max_output: 4_096,
        owned_by: "anthropic",
    },
    Model {
        id: "meta-llama/llama-3.3-70b-instruct",
        aliases: &[],
        kind: Kind::Chat,
        targets: &[t(OpenRouter, "meta-llama/llama-3.3-70b-instruct")],
        price: p(130_000, 400_000, 130_000),
        default_max_output: 4_096,
        owned_by: "meta-llama",
    },
    Model {
        id: "text-embedding-3-small",
        aliases: &["openai/text-embedding-3-small"],
        kind: Kind::Embedding,
        targets: &[t(OpenAi, "text-embedding-3-small")],
        price: p(20_000, 0, 20_000),
        default_max_output: 0,
        owned_by: "openai",
    },
];

/// The model for an id or alias (exact, then case-insensitive).
pub fn resolve(id: &str) -> Option<&'static Model> {
    let id = id.trim();
    MODELS
        .iter()
        .find(|m| m.id == id || m.aliases.contains(&id))
        .or_else(|| MODELS.iter().find(|m| m.id.eq_ignore_ascii_case(id) || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))))
}

/// Cost in micro-USD, rounded up (never undercharges by a fraction).
/// `markup_bps` is added on top in basis points (1_000 = 10 %).
pub fn cost_micros(price: &Price, input_tokens: u64, cached_input_tokens: u64, output_tokens: u64, markup_bps: u32) -> i64 {
    let cached = cached_input_tokens.min(input_tokens) as i128;
    let uncached = input_tokens as i128 - cached;
    // Numerator in micro-USD × 1e6 (tokens × micro-USD per 1M tokens).
    let denom: i128 = 1_000_000 * 10_000;
    let total = (|| {
        let raw = uncached
            .checked_mul(price.input_per_m as i128)?
            .checked_add(cached.checked_mul(price.cached_input_per_m as i128)?)?
            .checked_add((output_tokens as i128).checked_mul(price.output_per_m as i128)?)?;
        raw.checked_mul(10_000 + markup_bps as i128)?.checked_add(denom - 1)
    })();
    // Absurd token counts saturate rather than wrap to a small charge.
    total.map(|t| (t / denom).min(i64::MAX as i128) as i64).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_ids_and_aliases() {
        assert_eq!(resolve("gpt-4o-mini").map(|m| m.id), Some("gpt-4o-mini"));
        assert_eq!(resolve("sonnet").map(|m| m.id), Some("claude-sonnet-4-5"));
        assert_eq!(resolve("Claude-Sonnet-4-5").map(|m| m.id), Some("claude-sonnet-4-5"));
        assert_eq!(resolve("gpt-99"), None);
    }

    #[test]
    fn ids_and_aliases_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for m in MODELS {
            for name in std::iter::once(&m.id).chain(m.aliases.iter()) {
                assert!(seen.insert(name.to_ascii_lowercase()), "{name} twice");
            }
            assert!(!m.targets.is_empty(), "{} has no upstream", m.id);
        }
    }

    #[test]
    fn cost_rounds_up_to_the_micro_usd() {
        let price = p(150_000, 600_000, 75_000);
        // 1 input token = 0.15 micro-USD → 1.
        assert_eq!(cost_micros(&price, 1, 0, 0, 0), 1);
        assert_eq!(cost_micros(&price, 0, 0, 0, 0), 0);
        // 1M in + 1M out = 0.75 USD exactly.
        assert_eq!(cost_micros(&price, 1_000_000, 0, 1_000_000, 0), 750_000);
        // Cached tokens at the cached price.
        assert_eq!(cost_micros(&price, 1_000_000, 1_000_000, 0, 0), 75_000);
        // 10 % markup.
        assert_eq!(cost_micros(&price, 1_000_000, 0, 1_000_000, 1_000), 825_000);
        // Cached can never exceed input.
        assert_eq!(cost_micros(&price, 10, 50, 0, 0), 1);
    }

    #[test]
    fn cost_never_overflows() {
        let price = p(i64::MAX / 2, i64::MAX / 2, 0);
        assert!(cost_micros(&price, u64::MAX / 4, 0, u64::MAX / 4, 10_000) > 0);
    }
}
