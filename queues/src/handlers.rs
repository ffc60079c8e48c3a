//! The code each job runs.

use dex_shared::time::DAY_MS;
use serde_json::{json, Value};

use crate::job::Job;
use crate::ports::{JobError, JobPorts};

/// Refresh tokens are kept a day past expiry so a late reuse is still
/// recognised as reuse (and revokes its family) rather than as unknown.
pub const SESSION_GRACE_MS: i64 = DAY_MS;
/// Providers redeliver webhooks for up to three days; ids are kept far longer
/// so a very late duplicate is still recognised.
pub const WEBHOOK_RETENTION_MS: i64 = 30 * DAY_MS;
pub const JOB_RETENTION_MS: i64 = 30 * DAY_MS;

/// Runs one job; the `Ok` value is stored as the job's result.
pub async fn run(job: &Job, ports: &impl JobPorts) -> Result<Value, JobError> {
    match job {
        Job::Sweep => sweep(ports).await,
        Job::RefreshModels => refresh_models(ports).await,
        Job::LowBalance { account_id, balance_micros } => Ok(low_balance(account_id, *balance_micros)),
        Job::StripeEvent { event_id } => ports.apply_stripe_event(event_id).await,
        Job::SyncUsage => ports.sync_usage().await,
        // The identity and persona work arrives with its own issues; until
        // then the typed message is recorded (job_history) and acknowledged.
        Job::ProvisionIdentity { account_id, plan } => {
            Ok(json!({"account_id": account_id, "plan": plan, "provisioned": false, "handler": "not built yet"}))
        }
        Job::DeprovisionIdentity { account_id } => {
            Ok(json!({"account_id": account_id, "deprovisioned": false, "handler": "not built yet"}))
        }
        Job::AllocatePersonas { account_id, tier } => {
            Ok(json!({"account_id": account_id, "tier": tier, "allocated": false, "handler": "not built yet"}))
        }
    }
}

/// The event itself is the record operators and later notification work
/// read (job_history); no message channel exists yet, and the result says so.
fn low_balance(account_id: &str, balance_micros: i64) -> Value {
    json!({"account_id": account_id, "balance_micros": balance_micros, "notified": false, "channel": null})
}

async fn sweep(ports: &impl JobPorts) -> Result<Value, JobError> {
    let now = ports.now_ms();
    let sessions = ports.delete_expired_sessions(now - SESSION_GRACE_MS).await?;
    let webhook_events = ports.delete_webhook_events(now - WEBHOOK_RETENTION_MS).await?;
    let jobs = ports.delete_finished_jobs(now - JOB_RETENTION_MS).await?;
    let device_codes = ports.delete_expired_device_codes(now).await?;
    Ok(json!({"deleted": {"sessions": sessions, "webhook_events": webhook_events, "jobs": jobs, "device_codes": device_codes}}))
}

async fn refresh_models(ports: &impl JobPorts) -> Result<Value, JobError> {
    let sources = ports.model_sources();
    if sources.is_empty() {
        return Err(JobError::permanent("no OpenAI-compatible upstream is configured"));
    }
    let mut counts = serde_json::Map::new();
    // Every source is tried before failing, so one dead upstream does not
    // leave the others' catalogues stale.
    let mut failures = Vec::new();
    for source in &sources {
        match ports.fetch_model_ids(source).await {
            Ok(ids) => {
                ports.store_model_ids(source, &ids, ports.now_ms()).await?;
                counts.insert(source.provider.clone(), json!(ids.len()));
            }
            Err(e) => failures.push(e),
        }
    }
    if let Some(first) = failures.first() {
        let retryable = failures.iter().any(|f| f.retryable);
        let message = failures.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; ");
        return Err(JobError { retryable: retryable || first.retryable, message });
    }
    Ok(json!({"models": counts}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ModelSource;
    use futures::executor::block_on;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// In-memory ports: rows are (id, timestamp).
    #[derive(Default)]
    struct Mem {
        now: i64,
        sessions: RefCell<Vec<i64>>,
        webhooks: RefCell<Vec<i64>>,
        jobs: RefCell<Vec<i64>>,
        device_codes: RefCell<Vec<i64>>,
        upstream: BTreeMap<String, Result<Vec<String>, JobError>>,
        stored: RefCell<BTreeMap<String, Vec<String>>>,
    }

    fn delete_before(rows: &RefCell<Vec<i64>>, cutoff: i64) -> u64 {
        let mut rows = rows.borrow_mut();
        let before = rows.len();
        rows.retain(|t| *t >= cutoff);
        (before - rows.len()) as u64
    }

    impl JobPorts for Mem {
        fn now_ms(&self) -> i64 {
            self.now
        }
        async fn delete_expired_sessions(&self, before: i64) -> Result<u64, JobError> {
            Ok(delete_before(&self.sessions, before))
        }
        async fn delete_webhook_events(&self, before: i64) -> Result<u64, JobError> {
            Ok(delete_before(&self.webhooks, before))
        }
        async fn delete_finished_jobs(&self, before: i64) -> Result<u64, JobError> {
            Ok(delete_before(&self.jobs, before))
        }
        async fn delete_expired_device_codes(&self, before: i64) -> Result<u64, JobError> {
            Ok(delete_before(&self.device_codes, before))
        }
        async fn apply_stripe_event(&self, _: &str) -> Result<Value, JobError> {
            Ok(json!({}))
        }
        async fn sync_usage(&self) -> Result<Value, JobError> {
            Ok(json!({}))
        }
        fn model_sources(&self) -> Vec<ModelSource> {
            self.upstream.keys().map(|p| ModelSource { provider: p.clone() }).collect()
        }
        async fn fetch_model_ids(&self, s: &ModelSource) -> Result<Vec<String>, JobError> {
            self.upstream.get(&s.provider).cloned().unwrap_or_else(|| Err(JobError::permanent("unknown")))
        }
        async fn store_model_ids(&self, s: &ModelSource, ids: &[String], _: i64) -> Result<(), JobError> {
            self.stored.borrow_mut().insert(s.provider.clone(), ids.to_vec());
            Ok(())
        }
    }

    #[test]
    fn sweep_deletes_only_what_is_past_retention() {
        let now = 100 * DAY_MS;
        let m = Mem {
            now,
            sessions: RefCell::new(vec![now - 2 * DAY_MS, now - DAY_MS / 2, now + DAY_MS]),
            webhooks: RefCell::new(vec![now - 31 * DAY_MS, now - 29 * DAY_MS]),
            jobs: RefCell::new(vec![now - 40 * DAY_MS, now - 1]),
            device_codes: RefCell::new(vec![now - 1, now + 60_000]),
            ..Default::default()
        };
        let out = block_on(run(&Job::Sweep, &m));
        assert_eq!(out, Ok(json!({"deleted": {"sessions": 1, "webhook_events": 1, "jobs": 1, "device_codes": 1}})));
        assert_eq!(m.sessions.borrow().len(), 2);
        // Running again finds nothing more: the sweep is idempotent.
        let again = block_on(run(&Job::Sweep, &m));
        assert_eq!(again, Ok(json!({"deleted": {"sessions": 0, "webhook_events": 0, "jobs": 0, "device_codes": 0}})));
    }

    #[test]
    fn refresh_models_stores_each_source() {
        let mut m = Mem::default();
        m.upstream.insert("openai".into(), Ok(vec!["gpt-4o".into(), "gpt-4o-mini".into()]));
        m.upstream.insert("openrouter".into(), Ok(vec!["anthropic/claude-sonnet-4".into()]));
        let out = block_on(run(&Job::RefreshModels, &m));
        assert_eq!(out, Ok(json!({"models": {"openai": 2, "openrouter": 1}})));
        assert_eq!(m.stored.borrow()["openai"].len(), 2);
    }

    #[test]
    fn refresh_models_keeps_good_sources_and_retries_on_upstream_failure() {
        let mut m = Mem::default();
        m.upstream.insert("openai".into(), Err(JobError::retryable("openai answered 500")));
        m.upstream.insert("openrouter".into(), Ok(vec!["x".into()]));
        let out = block_on(run(&Job::RefreshModels, &m));
        assert_eq!(out, Err(JobError::retryable("openai answered 500")));
        assert_eq!(m.stored.borrow().get("openrouter").map(Vec::len), Some(1));
    }

    #[test]
    fn refresh_models_without_sources_fails_permanently() {
        let out = block_on(run(&Job::RefreshModels, &Mem::default()));
        assert!(matches!(out, Err(JobError { retryable: false, .. })));
    }
}
