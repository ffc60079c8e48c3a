//! Operator view of jobs: enqueue, list, inspect.

use dex_queues::{Job, Trigger};
use dex_shared::error::ApiError;
use dex_shared::time::rfc3339;
use serde_json::{json, Value};
use worker::Request;

use crate::edge::{json_response, limit_param, query_param, read_json, Ctx, HandlerResult, OrInternal};
use crate::jobs;
use crate::repositories::jobs::{self as history, JobRow};

const STATUSES: &[&str] = &["queued", "running", "retrying", "completed", "failed"];

fn job_json(row: &JobRow) -> Value {
    json!({
        "job_id": row.job_id,
        "job_type": row.job_type,
        "trigger": row.triggered_by,
        "payload": serde_json::from_str::<Value>(&row.payload).unwrap_or(Value::Null),
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "result": row.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
        "created_at": rfc3339(row.created_at),
        "started_at": row.started_at.map(rfc3339),
        "completed_at": row.completed_at.map(rfc3339),
        "dead_lettered_at": row.dead_lettered_at.map(rfc3339),
    })
}

pub async fn enqueue(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let job: Job = read_json(ctx, &mut req).await.map_err(|e| {
        if e.code == "invalid_request" {
            ApiError::bad_request("unknown_job_type", "Unknown job. Send {\"type\": \"sweep\"} or {\"type\": \"refresh_models\"}.")
        } else {
            e
        }
    })?;
    let envelope = jobs::enqueue(&ctx.env, job, Trigger::Admin).await.map_err(|e| {
        crate::logging::emit(crate::logging::error("job.enqueue_failed").field("detail", e.to_string()));
        ApiError::unavailable("queue_unavailable", "The job queue is unavailable; nothing was enqueued. Retry later.")
    })?;
    json_response(
        202,
        &json!({"job_id": envelope.job_id, "job_type": envelope.job.type_name(), "status": "queued", "attempts": 0, "trigger": "admin", "created_at": rfc3339(envelope.enqueued_at_ms)}),
    )
}

pub async fn list(ctx: &Ctx, req: &Request) -> HandlerResult {
    let job_type = query_param(req, "type");
    let status = query_param(req, "status");
    if let Some(s) = &status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::bad_request("invalid_status", format!("status must be one of {}", STATUSES.join(", "))));
        }
    }
    let limit = limit_param(req, 50, 200)?;
    let rows = history::list(&ctx.db()?, job_type.as_deref(), status.as_deref(), limit).await.or_internal("job list")?;
    json_response(200, &json!({"jobs": rows.iter().map(job_json).collect::<Vec<_>>()}))
}

pub async fn get(ctx: &Ctx, job_id: &str) -> HandlerResult {
    let row =
        history::get(&ctx.db()?, job_id).await.or_internal("job get")?.ok_or_else(|| ApiError::not_found(format!("No job {job_id}.")))?;
    json_response(200, &job_json(&row))
}
