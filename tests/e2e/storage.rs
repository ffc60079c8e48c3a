//! Tests that run one at a time after the main suite: those that read or
//! write the local D1 database directly (through
//! `wrangler d1 execute`, another process on the same SQLite file). They run
//! after the main suite, one at a time (scripts/e2e.sh): a second writer on
//! the file while the Worker is busy makes the Worker's own queries fail
//! with SQLITE_BUSY, which would be a fault of the harness, not the product;
//! and the circuit-breaker test, whose open breaker would steer the other
//! tests' requests.

#[allow(dead_code)]
mod common;

use common::{stack, unique};

#[tokio::test]
async fn keys_are_stored_hashed() {
    let s = stack();
    let (account, key) = s.new_account("hashed").await;
    let rows = s.d1(&format!("SELECT key_hash, prefix, last4 FROM api_keys WHERE account_id = '{account}'"));
    let row = &rows[0];
    let hash = row["key_hash"].as_str().unwrap_or_default();
    assert_eq!(hash.len(), 64, "{row}");
    assert!(!hash.contains(&key[8..]), "the key itself is not stored");
    assert_eq!(row["last4"].as_str(), Some(&key[key.len() - 4..]));
}

#[tokio::test]
async fn d1_holds_no_plaintext_key_or_password() {
    let s = stack();
    let ses = s.register("plain").await;
    let (_, key) = s.create_key(&ses.token, "plain").await;
    let dump =
        [s.d1("SELECT * FROM users"), s.d1("SELECT * FROM api_keys"), s.d1("SELECT * FROM sessions"), s.d1("SELECT * FROM device_codes")]
            .iter()
            .map(|v| v.to_string())
            .collect::<String>();
    assert!(dump.contains(&ses.user_id), "the dump is real");
    assert!(!dump.contains(&key), "an API key is stored in the clear");
    assert!(!dump.contains(&key["pk_live_".len()..]), "an API key body is stored in the clear");
    assert!(!dump.contains(&ses.password), "a password is stored in the clear");
    assert!(!dump.contains(&ses.refresh), "a refresh token is stored in the clear");
    assert!(dump.contains("pbkdf2-sha256$100000$"), "passwords are PBKDF2 hashes");
}

#[tokio::test]
async fn sweep_cron_deletes_expired_sessions_only() {
    let s = stack();
    let me = s.get("/v1/me", Some(&s.demo_key)).await;
    let user = me.body["user"]["id"].as_str().unwrap_or_default().to_string();
    let (old, fresh) = (format!("ses_old_{}", unique()), format!("ses_new_{}", unique()));
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let day = 86_400_000i64;
    s.d1(&format!(
        "INSERT INTO sessions (id, user_id, family_id, refresh_token_hash, created_at, expires_at) VALUES \
         ('{old}', '{user}', 'fam_{old}', 'h_{old}', {c}, {e_old}), ('{fresh}', '{user}', 'fam_{fresh}', 'h_{fresh}', {now_ms}, {e_new})",
        c = now_ms - 40 * day,
        e_old = now_ms - 10 * day,
        e_new = now_ms + 10 * day
    ));
    let r = s.http.get(s.url("/__scheduled")).query(&[("cron", "*/5 * * * *")]).send().await.expect("scheduled");
    assert!(r.status().is_success());
    let left = s.d1(&format!("SELECT id FROM sessions WHERE id IN ('{old}', '{fresh}')"));
    let ids: Vec<&str> = left.as_array().map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect()).unwrap_or_default();
    assert_eq!(ids, vec![fresh.as_str()], "expired session swept, live one kept");
    let jobs = s.get("/v1/admin/jobs?type=sweep&status=completed", Some(&s.operator_key)).await;
    let by_cron = jobs.body["jobs"].as_array().map(|j| j.iter().any(|j| j["trigger"] == "cron")).unwrap_or(false);
    assert!(by_cron, "the cron run is in job_history: {}", jobs.text);
}

/// The request id the proxy answered with, and the JSON body.
async fn proxied(s: &common::Stack, key: &str, path: &str, body: serde_json::Value) -> (String, serde_json::Value, String) {
    let r = s.http.post(s.url(path)).bearer_auth(key).json(&body).send().await.expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    let id = r.headers()["x-dexto-request-id"].to_str().unwrap_or_default().to_string();
    let text = r.text().await.unwrap_or_default();
    (id, serde_json::from_str(&text).unwrap_or_default(), text)
}

/// Polls the ledger row written after the response (`wait_until`).
async fn ledger_row(s: &common::Stack, request_id: &str) -> serde_json::Value {
    for _ in 0..40 {
        let rows = s.d1(&format!("SELECT * FROM usage_ledger WHERE request_id = '{request_id}'"));
        if let Some(row) = rows.as_array().and_then(|r| r.first()) {
            return row.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("no usage_ledger row for {request_id}");
}

#[tokio::test]
async fn usage_ledger_matches_what_the_upstream_reported() {
    let s = stack();
    let (account, key) = s.new_account("ledger").await;
    // Non-streaming, OpenAI upstream.
    let (id, body, _) = proxied(
        &s,
        &key,
        "/v1/chat/completions",
        serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]}),
    )
    .await;
    let row = ledger_row(&s, &id).await;
    assert_eq!(row["input_tokens"], body["usage"]["prompt_tokens"]);
    assert_eq!(row["output_tokens"], body["usage"]["completion_tokens"]);
    assert_eq!(row["estimated"], 0);
    assert_eq!(row["account_id"], account.as_str());
    assert_eq!(row["provider"], "openai");
    assert!(row["cost_micros"].as_i64().unwrap_or(0) > 0);

    // Streaming from Anthropic into an OpenAI client that asked for usage:
    // the numbers are Anthropic's (cumulative message_delta, last one wins).
    let (id, _, text) = proxied(
        &s,
        &key,
        "/v1/chat/completions",
        serde_json::json!({"model": "claude-sonnet-4-5", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "count this stream of words please"}]}),
    )
    .await;
    let last_usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .rfind(|v| v["usage"].is_object())
        .expect("a usage chunk");
    let row = ledger_row(&s, &id).await;
    assert_eq!(row["output_tokens"], last_usage["usage"]["completion_tokens"], "{text}");
    assert_eq!(row["input_tokens"], last_usage["usage"]["prompt_tokens"]);
    assert_eq!(row["provider"], "anthropic");
    assert_eq!(row["estimated"], 0);

    // A stream the client did not ask usage for is still metered exactly.
    let (id, _, text) = proxied(
        &s,
        &key,
        "/v1/chat/completions",
        serde_json::json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "quiet usage"}]}),
    )
    .await;
    assert!(!text.contains("\"usage\":{"));
    let row = ledger_row(&s, &id).await;
    assert_eq!(row["estimated"], 0);
    assert!(row["output_tokens"].as_i64().unwrap_or(0) > 0);

    // The month's aggregate moved with the ledger.
    let month = s.d1(&format!("SELECT requests, output_tokens FROM usage_monthly WHERE account_id = '{account}'"));
    assert_eq!(month[0]["requests"], 3, "{month}");
}

/// Starts a streamed chat completion; the response (unread) and its request id.
async fn open_stream(s: &common::Stack, key: &str, text: &str) -> (reqwest::Response, String) {
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .expect("sent");
    let id = r.headers()["x-dexto-request-id"].to_str().unwrap_or_default().to_string();
    (r, id)
}

#[tokio::test]
async fn usage_is_recorded_when_the_stream_breaks_or_the_client_leaves() {
    let s = stack();
    let (_, key) = s.new_account("ledger-broken").await;
    let marker = format!("broken {}", unique());
    s.fakes_script(serde_json::json!({"provider": "openai", "path": "/v1/chat/completions", "abort_after_chunks": 3, "times": 1, "body_contains": marker})).await;
    let (r, id) = open_stream(&s, &key, &marker).await;
    let _ = r.bytes().await;
    let row = ledger_row(&s, &id).await;
    assert_eq!(row["estimated"], 1, "no usage arrived before the break: estimated and flagged");
    assert!(row["input_tokens"].as_i64().unwrap_or(0) > 0);

    // The client hangs up after the first bytes of a slow stream.
    let marker = format!("leave {}", unique());
    s.fakes_script(serde_json::json!({"provider": "openai", "path": "/v1/chat/completions", "chunk_delay_ms": 300, "times": 1, "body_contains": marker})).await;
    let (r, id) = open_stream(&s, &key, &marker).await;
    drop(r);
    let row = ledger_row(&s, &id).await;
    assert!(row["input_tokens"].as_i64().unwrap_or(0) > 0, "{row}");
}

#[tokio::test]
async fn per_account_upstream_keys_are_sealed_at_rest() {
    let s = stack();
    let (account, key) = s.new_account("sealed").await;
    let r = s
        .post(
            "/v1/chat/completions",
            Some(&key),
            serde_json::json!({"model": "meta-llama/llama-3.3-70b-instruct", "messages": [{"role": "user", "content": "seal"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let minted: serde_json::Value =
        s.http.get(format!("{}/__fakes/openrouter/keys", s.fakes)).send().await.expect("fakes").json().await.unwrap_or_default();
    let full =
        minted["keys"].as_array().and_then(|k| k.iter().find(|k| k["name"] == format!("dex-edge {account}")).cloned()).expect("minted")
            ["key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    let rows = s.d1(&format!("SELECT * FROM upstream_keys WHERE account_id = '{account}'"));
    let text = rows.to_string();
    assert!(text.contains("v1."), "a sealed value is stored: {text}");
    assert!(!text.contains(&full) && !text.contains(&full[10..]), "the upstream key is not stored in the clear");
    assert_eq!(rows[0]["limit_micros"], 25_000_000);
}

#[tokio::test]
async fn a_hold_left_unsettled_is_settled_by_the_alarm_at_the_reserved_amount() {
    let s = stack();
    let (account, key) = s.new_account("alarm").await;
    let marker = format!("alarm {}", unique());
    let body =
        serde_json::json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 1000, "messages": [{"role": "user", "content": marker}]});
    // What the proxy reserves: input estimated at ceil(bytes / 3), plus max_tokens, at gpt-4o-mini's price.
    let bytes = serde_json::to_vec(&body).map(|b| b.len() as i64).unwrap_or(0);
    let input = (bytes + 2) / 3;
    let reserved = (input * 150_000 + 1000 * 600_000 + 999_999) / 1_000_000;
    let before =
        s.get(&format!("/v1/admin/accounts/{account}"), Some(&s.operator_key)).await.body["wallet"]["balance_micros"].as_i64().unwrap_or(0);
    // A stream slower than the hold's 4 s lifetime (set for the test stack):
    // the wallet's alarm settles the hold before the Worker does.
    s.fakes_script(serde_json::json!({"provider": "openai", "path": "/v1/chat/completions", "chunk_delay_ms": 500, "times": 1, "body_contains": marker})).await;
    let r = s.http.post(s.url("/v1/chat/completions")).bearer_auth(&key).json(&body).send().await.expect("sent");
    let id = r.headers()["x-dexto-request-id"].to_str().unwrap_or_default().to_string();
    let _ = r.text().await;
    let row = ledger_row(&s, &id).await;
    assert_eq!(row["reconcile"], 1, "flagged for reconciliation: {row}");
    assert_eq!(row["cost_micros"], reserved, "charged at the reserved amount: {row}");
    let wallet = s.get(&format!("/v1/admin/accounts/{account}"), Some(&s.operator_key)).await.body["wallet"].clone();
    assert_eq!(wallet["balance_micros"], before - reserved, "{wallet}");
    assert_eq!(wallet["holds"], 0);
}

#[tokio::test]
async fn overage_reaches_the_stripe_meter_exactly_once_across_a_failure_and_a_retry() {
    let s = stack();
    let ses = s.register("meter").await;
    let secret = common::stack_json()["stripe_webhook_secret"].as_str().unwrap_or_default().to_string();
    // Subscribe to Basic through Checkout (its allowance is 1,000 tokens in the test stack).
    let sub = s.post("/v1/billing/subscribe", Some(&ses.token), serde_json::json!({"plan": "basic"})).await;
    assert_eq!(sub.status, 200, "{}", sub.text);
    let session = sub.body["checkout_session_id"].as_str().unwrap_or_default().to_string();
    let done = s
        .http
        .post(format!("{}/__fakes/stripe/checkout/{session}/complete", s.fakes))
        .json(&serde_json::json!({"webhook_url": s.url("/webhooks/stripe"), "secret": secret}))
        .send()
        .await
        .expect("fakes");
    assert!(done.status().is_success());
    for _ in 0..40 {
        if s.get("/v1/billing/subscription", Some(&ses.token)).await.body["plan"] == "basic" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let (_, key) = s.create_key(&ses.token, "meter").await;
    // Two requests of ~1,250 input tokens each: past the allowance.
    for i in 0..2 {
        let prompt = format!("{i} {}", "word ".repeat(1000));
        let r = s
            .post(
                "/v1/chat/completions",
                Some(&key),
                serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let wallet = s.get(&format!("/v1/admin/accounts/{}", ses.account_id), Some(&s.operator_key)).await.body["wallet"].clone();
    let overage_in = wallet["overage_input_tokens"].as_u64().unwrap_or(0);
    let overage_out = wallet["overage_output_tokens"].as_u64().unwrap_or(0);
    assert!(overage_in > 0, "{wallet}");
    // Stripe fails the first meter call; the job retries.
    s.fakes_script(serde_json::json!({"provider": "stripe", "path": "/v1/billing/meter_events", "status": 500, "times": 1})).await;
    let hourly = || async {
        let r = s.http.get(s.url("/__scheduled")).query(&[("cron", "0 * * * *")]).send().await.expect("scheduled");
        assert!(r.status().is_success());
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        for _ in 0..60 {
            let jobs = s.get("/v1/admin/jobs?type=sync_usage&limit=1", Some(&s.operator_key)).await;
            if jobs.body["jobs"][0]["status"] == "completed" {
                return jobs.body["jobs"][0].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        panic!("sync_usage did not complete");
    };
    let first = hourly().await;
    assert!(first["attempts"].as_i64().unwrap_or(0) >= 2, "retried after Stripe's 500: {first}");
    let again = hourly().await;
    assert_eq!(again["result"]["meter_events"], 0, "nothing new to send: {again}");
    let events: serde_json::Value =
        s.http.get(format!("{}/__fakes/stripe/meter_events", s.fakes)).send().await.expect("fakes").json().await.unwrap_or_default();
    let customer = {
        let reqs = s.fakes_requests("stripe", "/v1/checkout/sessions").await;
        let body = reqs.iter().filter_map(|q| q["body"].as_str()).find(|b| b.contains(&ses.account_id)).unwrap_or_default().to_string();
        body.split('&').find_map(|kv| kv.strip_prefix("customer=")).unwrap_or_default().to_string()
    };
    let mine: Vec<&serde_json::Value> = events["events"]
        .as_array()
        .map(|e| e.iter().filter(|m| m["payload"]["stripe_customer_id"] == customer.as_str()).collect())
        .unwrap_or_default();
    let total = |kind: &str| -> u64 {
        mine.iter()
            .filter(|m| m["event_name"].as_str().is_some_and(|n| n.contains(kind)))
            .map(|m| m["payload"]["value"].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
            .sum()
    };
    assert_eq!(total("input"), overage_in, "input overage reported exactly once: {events}");
    assert_eq!(total("output"), overage_out, "output overage reported exactly once: {events}");
}

/// Named to run last (libtest orders by name in this one-thread binary): it
/// leaves OpenAI's breaker open for 30 s in the Worker's isolate.
#[tokio::test]
async fn zz_circuit_breaker_stops_calling_a_failing_upstream() {
    let s = stack();
    let (_, key) = s.new_account("breaker").await;
    let marker = format!("breaker {}", unique());
    // OpenAI fails every request carrying the marker; OpenRouter serves them.
    s.fakes_script(
        serde_json::json!({"provider": "openai", "path": "/v1/chat/completions", "status": 500, "times": 0, "body_contains": marker}),
    )
    .await;
    for i in 0..8 {
        let r = s
            .post(
                "/v1/chat/completions",
                Some(&key),
                serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("{marker} {i}")}]}),
            )
            .await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await; // the key's bucket
    }
    s.fakes_reset().await;
    let hits = s
        .fakes_requests("openai", "/v1/chat/completions")
        .await
        .iter()
        .filter(|q| q["body"].as_str().is_some_and(|b| b.contains(&marker)))
        .count();
    assert_eq!(hits, 5, "after 5 failures the breaker opened and OpenAI was skipped");
}
