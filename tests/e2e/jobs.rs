//! Queues and cron: jobs enqueued, consumed and recorded; retries into the
//! dead-letter queue; cron tasks run through /__scheduled.

use std::time::Duration;

use serde_json::json;

use crate::common::stack;

#[tokio::test]
async fn enqueued_job_is_consumed_and_recorded() {
    let s = stack();
    let e = s.post("/v1/admin/jobs", Some(&s.operator_key), json!({"type": "sweep"})).await;
    assert_eq!(e.status, 202, "{}", e.text);
    assert_eq!(e.body["status"], "queued");
    let id = e.body["job_id"].as_str().unwrap_or_default().to_string();
    let done = s.wait_job(&id, &["completed", "failed"], Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["trigger"], "admin");
    assert!(done["result"]["deleted"]["sessions"].is_u64(), "{done}");
}

#[tokio::test]
async fn unknown_job_type_is_400_and_enqueues_nothing() {
    let s = stack();
    let before = s.get("/v1/admin/jobs?type=mine_bitcoin", Some(&s.operator_key)).await;
    assert_eq!(before.body["jobs"].as_array().map(Vec::len), Some(0));
    s.post("/v1/admin/jobs", Some(&s.operator_key), json!({"type": "mine_bitcoin"})).await.assert_error(400, "unknown_job_type");
    let after = s.get("/v1/admin/jobs?type=mine_bitcoin", Some(&s.operator_key)).await;
    assert_eq!(after.body["jobs"].as_array().map(Vec::len), Some(0));
    s.get("/v1/admin/jobs?status=bogus", Some(&s.operator_key)).await.assert_error(400, "invalid_status");
    s.get("/v1/admin/jobs?limit=0", Some(&s.operator_key)).await.assert_error(400, "invalid_limit");
    s.get("/v1/admin/jobs/job_missing", Some(&s.operator_key)).await.assert_error(404, "not_found");
}

/// One test, in order, because both halves use the fake's /v1/models.
#[tokio::test]
async fn refresh_models_reads_upstreams_and_dead_letters_when_they_keep_failing() {
    let s = stack();
    s.fakes_reset().await;

    // Happy path: both OpenAI-compatible upstreams asked with their keys.
    let e = s.post("/v1/admin/jobs", Some(&s.operator_key), json!({"type": "refresh_models"})).await;
    let id = e.body["job_id"].as_str().unwrap_or_default().to_string();
    let done = s.wait_job(&id, &["completed", "failed"], Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["result"]["models"]["openai"].as_u64().unwrap_or(0) >= 1, "{done}");
    assert!(done["result"]["models"]["openrouter"].as_u64().unwrap_or(0) >= 1, "{done}");
    let seen = s.fakes_requests("openai", "/v1/models").await;
    assert!(seen.iter().any(|r| r["headers"]["authorization"] == "Bearer sk-local-fake-openai"), "{seen:?}");
    let seen = s.fakes_requests("openrouter", "/v1/models").await;
    assert!(seen.iter().any(|r| r["headers"]["authorization"] == "Bearer sk-or-local-fake"), "{seen:?}");

    // Failure: the upstream answers 500 every time; the job is retried with
    // backoff, then lands in the dead-letter queue and is recorded failed.
    s.fakes_script(json!({"provider": "openai", "path": "/v1/models", "status": 500, "times": 0})).await;
    let e = s.post("/v1/admin/jobs", Some(&s.operator_key), json!({"type": "refresh_models"})).await;
    let id = e.body["job_id"].as_str().unwrap_or_default().to_string();
    let failed = s.wait_job(&id, &["failed"], Duration::from_secs(60)).await;
    s.fakes_reset().await;
    assert!(failed["dead_lettered_at"].is_string(), "{failed}");
    assert_eq!(failed["attempts"], 4, "1 attempt + max_retries 3: {failed}");
    assert!(failed["last_error"].as_str().is_some_and(|e| e.contains("500")), "{failed}");
}

#[tokio::test]
async fn hourly_cron_enqueues_its_jobs() {
    let s = stack();
    let before = s.get("/v1/admin/jobs?type=refresh_models&limit=200", Some(&s.operator_key)).await;
    let count = |v: &serde_json::Value| v["jobs"].as_array().map(|j| j.iter().filter(|j| j["trigger"] == "cron").count()).unwrap_or(0);
    let n = count(&before.body);
    let r = s.http.get(s.url("/__scheduled")).query(&[("cron", "0 * * * *")]).send().await.expect("scheduled");
    assert!(r.status().is_success());
    let after = s.get("/v1/admin/jobs?type=refresh_models&limit=200", Some(&s.operator_key)).await;
    assert_eq!(count(&after.body), n + 1, "{}", after.text);
}
