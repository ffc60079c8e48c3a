//! What a job may ask of the platform. The Worker implements this over D1,
//! KV and `Fetch`; tests implement it in memory.

/// A failed attempt. Retryable failures go back on the queue with a delay;
/// permanent ones (bad payload, a 4xx that will not change) fail at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub retryable: bool,
    pub message: String,
}

impl JobError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { retryable: true, message: message.into() }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self { retryable: false, message: message.into() }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// An upstream whose model list `refresh_models` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// `openai`, `openrouter`, …
    pub provider: String,
}

#[allow(async_fn_in_trait)] // single-threaded wasm: no Send bound wanted
pub trait JobPorts {
    fn now_ms(&self) -> i64;

    async fn delete_expired_sessions(&self, expired_before_ms: i64) -> Result<u64, JobError>;
    async fn delete_webhook_events(&self, processed_before_ms: i64) -> Result<u64, JobError>;
    async fn delete_finished_jobs(&self, finished_before_ms: i64) -> Result<u64, JobError>;
    async fn delete_expired_device_codes(&self, expired_before_ms: i64) -> Result<u64, JobError>;

    /// Applies a verified Stripe event (credits, plans, account status).
    async fn apply_stripe_event(&self, event_id: &str) -> Result<serde_json::Value, JobError>;
    /// Sends metered accounts' unreported overage to Stripe meters.
    async fn sync_usage(&self) -> Result<serde_json::Value, JobError>;

    fn model_sources(&self) -> Vec<ModelSource>;
    async fn fetch_model_ids(&self, source: &ModelSource) -> Result<Vec<String>, JobError>;
    async fn store_model_ids(&self, source: &ModelSource, ids: &[String], fetched_at_ms: i64) -> Result<(), JobError>;
}
