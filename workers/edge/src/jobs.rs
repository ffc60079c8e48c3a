//! The queue side: enqueueing jobs, the `JOBS` consumer with retries and
//! backoff, the dead-letter consumer, and the platform ports jobs run on.

use std::time::Duration;

use dex_queues::ports::ModelSource;
use dex_queues::{retry, Job, JobEnvelope, JobError, JobPorts, Trigger};
use serde_json::Value;
use worker::{Env, Headers, MessageBatch, MessageExt, Method, QueueRetryOptionsBuilder};

use crate::config::Config;
use crate::ids::new_id;
use crate::logging::{self, now_ms};
use crate::providers::http::call_json;
use crate::repositories::{device_codes, jobs as history, sessions, webhook_events};

/// Upstream calls made by jobs give up after this long.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);
/// Cached model lists outlive two hourly refreshes.
const MODEL_CACHE_TTL_SECS: u64 = 2 * 3600;

/// Records the job as queued and puts it on `JOBS`.
pub async fn enqueue(env: &Env, job: Job, trigger: Trigger) -> worker::Result<JobEnvelope> {
    let envelope = JobEnvelope { job_id: new_id("job"), trigger, enqueued_at_ms: now_ms(), job };
    let db = env.d1("DB")?;
    history::insert_queued(&db, &envelope).await?;
    if let Err(e) = env.queue("JOBS")?.send(&envelope).await {
        let _ = history::fail_attempt(&db, &envelope.job_id, &format!("enqueue failed: {e}"), true, now_ms()).await;
        return Err(e);
    }
    logging::emit(
        logging::info("job.enqueued")
            .field("job_id", envelope.job_id.as_str())
            .field("job_type", envelope.job.type_name())
            .field("trigger", trigger.as_str()),
    );
    Ok(envelope)
}

pub async fn consume(batch: MessageBatch<Value>, env: Env) {
    let dead_letters = batch.queue().ends_with("-dlq");
    let messages = match batch.messages() {
        Ok(m) => m,
        Err(e) => {
            logging::emit(logging::error("queue.batch_unreadable").field("queue", batch.queue()).field("detail", e.to_string()));
            batch.retry_all();
            return;
        }
    };
    let base_delay = Config::new(&env).get_u64("JOB_RETRY_BASE_SECONDS", 10) as u32;
    for msg in messages {
        let envelope: JobEnvelope = match serde_json::from_value(msg.body().clone()) {
            Ok(e) => e,
            Err(e) => {
                // A message no version of this code can read: retrying cannot help.
                logging::emit(logging::error("job.unreadable_message").field("queue", batch.queue()).field("detail", e.to_string()));
                msg.ack();
                continue;
            }
        };
        if dead_letters {
            match record_dead_letter(&env, &envelope).await {
                Ok(()) => {
                    logging::emit(
                        logging::error("job.dead_lettered")
                            .field("job_id", envelope.job_id.as_str())
                            .field("job_type", envelope.job.type_name()),
                    );
                    msg.ack();
                }
                Err(e) => {
                    logging::emit(
                        logging::error("job.dead_letter_record_failed")
                            .field("job_id", envelope.job_id.as_str())
                            .field("detail", e.to_string()),
                    );
                    msg.retry();
                }
            }
            continue;
        }
        match run_attempt(&env, &envelope).await {
            AttemptOutcome::Done => msg.ack(),
            AttemptOutcome::Retry { attempt } => {
                let delay = retry::delay_secs(attempt, base_delay);
                msg.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay).build());
            }
        }
    }
}

async fn record_dead_letter(env: &Env, envelope: &JobEnvelope) -> worker::Result<()> {
    history::mark_dead_lettered(&env.d1("DB")?, envelope, now_ms()).await
}

enum AttemptOutcome {
    Done,
    Retry { attempt: u32 },
}

/// One delivery of a job: recorded, run, recorded again. Retryable failures
/// go back on the queue (which dead-letters them after `max_retries`);
/// permanent ones are recorded failed and acknowledged.
async fn run_attempt(env: &Env, envelope: &JobEnvelope) -> AttemptOutcome {
    let db = match env.d1("DB") {
        Ok(db) => db,
        Err(_) => return AttemptOutcome::Retry { attempt: 1 },
    };
    let attempt = match history::start_attempt(&db, envelope, now_ms()).await {
        Ok(n) => n.max(1) as u32,
        Err(e) => {
            logging::emit(
                logging::error("job.history_unavailable").field("job_id", envelope.job_id.as_str()).field("detail", e.to_string()),
            );
            return AttemptOutcome::Retry { attempt: 1 };
        }
    };
    let ports = WorkerPorts { env };
    let outcome = dex_queues::run(&envelope.job, &ports).await;
    let line = |event: &str| {
        logging::info(event).field("job_id", envelope.job_id.as_str()).field("job_type", envelope.job.type_name()).field("attempt", attempt)
    };
    match outcome {
        Ok(result) => {
            let _ = history::complete(&db, &envelope.job_id, &result.to_string(), now_ms()).await;
            logging::emit(line("job.completed"));
            AttemptOutcome::Done
        }
        Err(e) => {
            let _ = history::fail_attempt(&db, &envelope.job_id, &e.message, !e.retryable, now_ms()).await;
            logging::emit(line(if e.retryable { "job.retrying" } else { "job.failed" }).field("error", e.message.as_str()));
            if e.retryable {
                AttemptOutcome::Retry { attempt }
            } else {
                AttemptOutcome::Done
            }
        }
    }
}

/// Runs a job now, outside the queue (cron tasks that are quick and local),
/// with the same history row a queued job gets.
pub async fn run_inline(env: &Env, job: Job, trigger: Trigger) -> bool {
    let envelope = JobEnvelope { job_id: new_id("job"), trigger, enqueued_at_ms: now_ms(), job };
    matches!(run_attempt(env, &envelope).await, AttemptOutcome::Done)
}

/// Jobs' view of the platform.
struct WorkerPorts<'a> {
    env: &'a Env,
}

fn d1_err(e: worker::Error) -> JobError {
    JobError::retryable(format!("D1: {e}"))
}

impl WorkerPorts<'_> {
    fn db(&self) -> Result<worker::D1Database, JobError> {
        self.env.d1("DB").map_err(d1_err)
    }

    fn source_config(&self, provider: &str) -> Option<(String, String)> {
        let c = Config::new(self.env);
        let (base, key) = match provider {
            "openai" => ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
            "openrouter" => ("OPENROUTER_BASE_URL", "OPENROUTER_API_KEY"),
            _ => return None,
        };
        Some((c.base_url(base)?, c.get(key)?))
    }
}

impl JobPorts for WorkerPorts<'_> {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    async fn delete_expired_sessions(&self, before: i64) -> Result<u64, JobError> {
        sessions::delete_expired(&self.db()?, before).await.map_err(d1_err)
    }

    async fn delete_webhook_events(&self, before: i64) -> Result<u64, JobError> {
        webhook_events::delete_processed_before(&self.db()?, before).await.map_err(d1_err)
    }

    async fn delete_finished_jobs(&self, before: i64) -> Result<u64, JobError> {
        history::delete_finished_before(&self.db()?, before).await.map_err(d1_err)
    }

    async fn delete_expired_device_codes(&self, before: i64) -> Result<u64, JobError> {
        device_codes::delete_expired(&self.db()?, before).await.map_err(d1_err)
    }

    async fn apply_stripe_event(&self, event_id: &str) -> Result<Value, JobError> {
        let db = self.db()?;
        let payload = webhook_events::payload(&db, "stripe", event_id)
            .await
            .map_err(d1_err)?
            .ok_or_else(|| JobError::permanent(format!("no stored event {event_id}")))?;
        let event: Value = serde_json::from_str(&payload).map_err(|e| JobError::permanent(format!("stored event unreadable: {e}")))?;
        crate::billing_events::apply(self.env, &event).await
    }

    async fn sync_usage(&self) -> Result<Value, JobError> {
        crate::billing_events::sync_usage(self.env).await
    }

    fn model_sources(&self) -> Vec<ModelSource> {
        ["openai", "openrouter"]
            .into_iter()
            .filter(|p| self.source_config(p).is_some())
            .map(|p| ModelSource { provider: p.to_string() })
            .collect()
    }

    async fn fetch_model_ids(&self, source: &ModelSource) -> Result<Vec<String>, JobError> {
        let (base, key) =
            self.source_config(&source.provider).ok_or_else(|| JobError::permanent(format!("{} is not configured", source.provider)))?;
        let (status, body) =
            get_json(&format!("{base}/v1/models"), &key).await.map_err(|e| JobError::retryable(format!("{}: {e}", source.provider)))?;
        match status {
            200..=299 => {}
            // Rate limits and server errors pass; a refused key or a wrong
            // path will not fix itself by retrying.
            429 | 500..=599 => return Err(JobError::retryable(format!("{} answered {status}", source.provider))),
            _ => return Err(JobError::permanent(format!("{} answered {status}", source.provider))),
        }
        let ids = body["data"]
            .as_array()
            .ok_or_else(|| JobError::retryable(format!("{} sent a model list without data", source.provider)))?
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        Ok(ids)
    }

    async fn store_model_ids(&self, source: &ModelSource, ids: &[String], fetched_at_ms: i64) -> Result<(), JobError> {
        let kv = self.env.kv("CACHE").map_err(|e| JobError::retryable(format!("KV: {e}")))?;
        let value = serde_json::json!({"ids": ids, "fetched_at_ms": fetched_at_ms});
        kv.put(&format!("models:{}", source.provider), value)
            .map_err(|e| JobError::retryable(format!("KV: {e}")))?
            .expiration_ttl(MODEL_CACHE_TTL_SECS)
            .execute()
            .await
            .map_err(|e| JobError::retryable(format!("KV: {e}")))
    }
}

/// GET with a bearer key and a timeout; the status and the JSON body (or null).
async fn get_json(url: &str, key: &str) -> Result<(u16, Value), String> {
    let headers = Headers::new();
    headers.set("authorization", &format!("Bearer {key}")).map_err(|e| e.to_string())?;
    headers.set("accept", "application/json").map_err(|e| e.to_string())?;
    call_json(Method::Get, url, headers, None, UPSTREAM_TIMEOUT).await.map_err(|e| e.to_string())
}
