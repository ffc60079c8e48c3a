//! JSON-line logs with a redaction layer.
//!
//! Every log line the Worker writes is built here. Two defences, both always on:
//! fields whose *name* says they hold a secret or user content are replaced
//! wholesale, and every string *value* is scanned for things that look like
//! keys, tokens or e-mail addresses. Whatever a caller passes, a key, a token,
//! a password, a prompt or a message body does not reach the log.

use serde_json::{Map, Value};

pub const REDACTED: &str = "[redacted]";

/// Field names (lower-cased, `-` and `_` folded) whose values never get logged.
const SECRET_FIELD_PARTS: &[&str] = &[
    "authorization",
    "password",
    "passwd",
    "token",
    "secret",
    "apikey",
    "cookie",
    "signature",
    "prompt",
    "messages",
    "content",
    "body",
    "input",
    "otp",
    "code_verifier",
];

/// Prefixes of credentials we issue or handle; a word starting with one is a secret.
const SECRET_WORD_PREFIXES: &[&str] =
    &["pk_live_", "pk_test_", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_", "sk-", "eyJ", "xoxb-", "ghp_"];

fn field_is_secret(name: &str) -> bool {
    let folded: String = name.to_ascii_lowercase().chars().filter(|c| *c != '-' && *c != '_').collect();
    folded.ends_with("key") || SECRET_FIELD_PARTS.iter().any(|p| folded.contains(&p.replace('_', "")))
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '/' | '=' | '@')
}

fn word_is_secret(word: &str) -> bool {
    if SECRET_WORD_PREFIXES.iter().any(|p| word.starts_with(p) && word.len() > p.len() + 3) {
        return true;
    }
    // An e-mail address is PII.
    if let Some((local, domain)) = word.split_once('@') {
        if !local.is_empty() && domain.contains('.') {
            return true;
        }
    }
    // A long unbroken run of base64/hex is almost certainly a credential.
    word.len() >= 40 && word.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '/' | '='))
}

/// Replaces every secret-looking word in a free-text value.
pub fn scrub_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let mut after_bearer = false;
    let flush = |word: &mut String, out: &mut String, after_bearer: &mut bool| {
        if word.is_empty() {
            return;
        }
        if *after_bearer || word_is_secret(word) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        *after_bearer = word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("basic");
        word.clear();
    };
    for c in text.chars() {
        if is_word_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out, &mut after_bearer);
            out.push(c);
        }
    }
    flush(&mut word, &mut out, &mut after_bearer);
    out
}

/// Redacts a JSON value recursively: secret-named members become `[redacted]`,
/// strings are scrubbed.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    // Counts such as `input_tokens` are numbers and harmless;
                    // only text and structures under a secret name are dropped.
                    let holds_text = matches!(v, Value::String(_) | Value::Object(_) | Value::Array(_));
                    let v = if holds_text && field_is_secret(k) { Value::String(REDACTED.into()) } else { redact(v) };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) => Value::String(scrub_text(s)),
        other => other.clone(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One log line under construction.
#[derive(Debug, Clone)]
pub struct LogLine {
    level: Level,
    event: String,
    fields: Map<String, Value>,
}

impl LogLine {
    pub fn new(level: Level, event: &str) -> Self {
        Self { level, event: event.to_string(), fields: Map::new() }
    }

    pub fn field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// The redacted JSON line, with the time given by the caller.
    pub fn render(&self, now_ms: i64) -> String {
        let mut obj = Map::new();
        obj.insert("ts".into(), Value::String(crate::time::rfc3339(now_ms)));
        obj.insert("level".into(), Value::String(self.level.as_str().into()));
        obj.insert("event".into(), Value::String(scrub_text(&self.event)));
        if let Value::Object(fields) = redact(&Value::Object(self.fields.clone())) {
            for (k, v) in fields {
                obj.entry(k).or_insert(v);
            }
        }
        Value::Object(obj).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "pk_live_0a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ12";

    #[test]
    fn secret_named_fields_are_replaced() {
        let v = redact(&json!({
            "authorization": "Bearer abc",
            "password": "hunter2hunter2",
            "refresh_token": "r1",
            "api_key": "x",
            "X-Api-Key": "y",
            "messages": [{"role":"user","content":"my secret plan"}],
            "prompt": "tell me",
            "body": "{\"a\":1}",
            "key_id": "key_123",
            "input_tokens": 12,
            "status": 200
        }));
        for f in ["authorization", "password", "refresh_token", "api_key", "X-Api-Key", "messages", "prompt", "body"] {
            assert_eq!(v[f], REDACTED, "{f}");
        }
        assert_eq!(v["key_id"], "key_123");
        assert_eq!(v["input_tokens"], 12);
        assert_eq!(v["status"], 200);
    }

    #[test]
    fn secrets_inside_free_text_are_scrubbed() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let s =
            scrub_text(&format!("failed for {KEY} with Bearer opaque123 and {jwt}, mail bob@example.com; sk-proj-abcdef and whsec_abcdef"));
        assert!(!s.contains(KEY), "{s}");
        assert!(!s.contains("opaque123"), "{s}");
        assert!(!s.contains(jwt), "{s}");
        assert!(!s.contains("bob@example.com"), "{s}");
        assert!(!s.contains("sk-proj-abcdef"), "{s}");
        assert!(!s.contains("whsec_abcdef"), "{s}");
        assert!(s.starts_with("failed for [redacted] with Bearer [redacted]"), "{s}");
    }

    #[test]
    fn ordinary_text_is_kept() {
        let s = "GET /v1/models 200 in 12 ms (req_abc123)";
        assert_eq!(scrub_text(s), s);
    }

    #[test]
    fn rendered_line_is_json_and_clean() {
        let line = LogLine::new(Level::Warn, "auth.failed")
            .field("presented", KEY)
            .field("detail", format!("key {KEY} revoked"))
            .field("nested", json!({"token": "t0ken", "path": "/keys/validate"}))
            .render(0);
        assert!(!line.contains(KEY));
        assert!(!line.contains("t0ken"));
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        assert_eq!(v["level"], "warn");
        assert_eq!(v["event"], "auth.failed");
        assert_eq!(v["nested"]["path"], "/keys/validate");
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn fields_cannot_overwrite_envelope() {
        let line = LogLine::new(Level::Info, "x").field("level", "error").render(0);
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        assert_eq!(v["level"], "info");
    }
}
