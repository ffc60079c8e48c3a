//! `job_history`: one row per job, updated on every attempt.

use dex_queues::JobEnvelope;
use serde::{Deserialize, Serialize};
use worker::D1Database;

use super::{changes, int, opt_text, text};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRow {
    pub job_id: String,
    pub job_type: String,
    pub triggered_by: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub result: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub dead_lettered_at: Option<i64>,
}

const COLUMNS: &str =
    "job_id, job_type, triggered_by, payload, status, attempts, last_error, result, created_at, started_at, completed_at, dead_lettered_at";

fn payload(env: &JobEnvelope) -> String {
    serde_json::to_string(&env.job).unwrap_or_else(|_| "{}".into())
}

pub async fn insert_queued(db: &D1Database, env: &JobEnvelope) -> worker::Result<()> {
    db.prepare("INSERT INTO job_history (job_id, job_type, triggered_by, payload, status, attempts, created_at) VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5)")
        .bind(&[text(&env.job_id), text(env.job.type_name()), text(env.trigger.as_str()), text(&payload(env)), int(env.enqueued_at_ms)])?
        .run()
        .await?;
    Ok(())
}

/// Marks an attempt as started and returns its number. The row is created
/// here if the enqueue-time insert was lost.
pub async fn start_attempt(db: &D1Database, env: &JobEnvelope, now_ms: i64) -> worker::Result<i64> {
    let attempts = db
        .prepare(
            "INSERT INTO job_history (job_id, job_type, triggered_by, payload, status, attempts, created_at, started_at) \
             VALUES (?1, ?2, ?3, ?4, 'running', 1, ?5, ?6) \
             ON CONFLICT(job_id) DO UPDATE SET status = 'running', attempts = attempts + 1, started_at = ?6 \
             RETURNING attempts",
        )
        .bind(&[
            text(&env.job_id),
            text(env.job.type_name()),
            text(env.trigger.as_str()),
            text(&payload(env)),
            int(env.enqueued_at_ms),
            int(now_ms),
        ])?
        .first::<i64>(Some("attempts"))
        .await?;
    Ok(attempts.unwrap_or(1))
}

pub async fn complete(db: &D1Database, job_id: &str, result: &str, now_ms: i64) -> worker::Result<()> {
    db.prepare("UPDATE job_history SET status = 'completed', result = ?2, last_error = NULL, completed_at = ?3 WHERE job_id = ?1")
        .bind(&[text(job_id), text(result), int(now_ms)])?
        .run()
        .await?;
    Ok(())
}

/// Records a failed attempt: `retrying` when the queue will deliver it
/// again, `failed` when it will not.
pub async fn fail_attempt(db: &D1Database, job_id: &str, error: &str, final_failure: bool, now_ms: i64) -> worker::Result<()> {
    let status = if final_failure { "failed" } else { "retrying" };
    db.prepare("UPDATE job_history SET status = ?2, last_error = ?3, completed_at = CASE WHEN ?2 = 'failed' THEN ?4 ELSE completed_at END WHERE job_id = ?1")
        .bind(&[text(job_id), text(status), text(error), int(now_ms)])?
        .run()
        .await?;
    Ok(())
}

/// A message that used up its retries. Idempotent: a redelivered dead letter
/// changes nothing more.
pub async fn mark_dead_lettered(db: &D1Database, env: &JobEnvelope, now_ms: i64) -> worker::Result<()> {
    db.prepare(
        "INSERT INTO job_history (job_id, job_type, triggered_by, payload, status, attempts, created_at, completed_at, dead_lettered_at, last_error) \
         VALUES (?1, ?2, ?3, ?4, 'failed', 0, ?5, ?6, ?6, 'dead-lettered before any recorded attempt') \
         ON CONFLICT(job_id) DO UPDATE SET status = 'failed', completed_at = COALESCE(completed_at, ?6), dead_lettered_at = COALESCE(dead_lettered_at, ?6)",
    )
    .bind(&[text(&env.job_id), text(env.job.type_name()), text(env.trigger.as_str()), text(&payload(env)), int(env.enqueued_at_ms), int(now_ms)])?
    .run()
    .await?;
    Ok(())
}

pub async fn get(db: &D1Database, job_id: &str) -> worker::Result<Option<JobRow>> {
    db.prepare(format!("SELECT {COLUMNS} FROM job_history WHERE job_id = ?1")).bind(&[text(job_id)])?.first::<JobRow>(None).await
}

pub async fn list(db: &D1Database, job_type: Option<&str>, status: Option<&str>, limit: u32) -> worker::Result<Vec<JobRow>> {
    db.prepare(format!(
        "SELECT {COLUMNS} FROM job_history WHERE (?1 IS NULL OR job_type = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY created_at DESC LIMIT ?3"
    ))
    .bind(&[opt_text(job_type), opt_text(status), int(limit as i64)])?
    .all()
    .await?
    .results::<JobRow>()
}

pub async fn delete_finished_before(db: &D1Database, before_ms: i64) -> worker::Result<u64> {
    let r = db
        .prepare("DELETE FROM job_history WHERE status IN ('completed', 'failed') AND completed_at < ?1")
        .bind(&[int(before_ms)])?
        .run()
        .await?;
    Ok(changes(&r))
}
