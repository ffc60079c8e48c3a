//! Configuration read from `[vars]` and secrets. Every external service is
//! reached through a base URL from here, never a hard-coded host.

use worker::Env;

thread_local! {
    static SEEN: std::cell::RefCell<std::collections::HashMap<String, Option<String>>> = Default::default();
}

pub struct Config<'a> {
    env: &'a Env,
}

impl<'a> Config<'a> {
    pub fn new(env: &'a Env) -> Self {
        Self { env }
    }

    /// A var or secret, trimmed; `None` when unset or empty. Remembered for
    /// the isolate's life: vars and secrets only change with a new
    /// deployment, which starts new isolates, and each lookup crosses into
    /// JavaScript (a proxied request makes dozens).
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = SEEN.with(|s| s.borrow().get(name).cloned()) {
            return v;
        }
        let v = self.env.secret(name).ok().map(|s| s.to_string()).or_else(|| self.env.var(name).ok().map(|v| v.to_string()));
        let v = v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        SEEN.with(|s| s.borrow_mut().insert(name.to_string(), v.clone()));
        v
    }

    pub fn get_u64(&self, name: &str, default: u64) -> u64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    pub fn base_url(&self, name: &str) -> Option<String> {
        self.get(name).map(|u| u.trim_end_matches('/').to_string())
    }

    pub fn max_body_bytes(&self) -> u64 {
        self.get_u64("MAX_BODY_BYTES", 4 * 1024 * 1024)
    }

    pub fn cors_origins(&self) -> Vec<String> {
        self.get("CORS_ALLOWED_ORIGINS")
            .unwrap_or_else(|| "https://dexto.ai".into())
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The pepper for keyed hashes of API keys. Without it no key can be
    /// checked or issued, so its absence is a configuration error.
    pub fn key_pepper(&self) -> Option<String> {
        self.get("KEY_PEPPER")
    }
}
