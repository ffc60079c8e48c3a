//! Prepaid credit around proxied requests: reserve, settle, release, 402.

use std::time::Duration;

use serde_json::json;

use crate::common::{stack, unique, Stack};

async fn balance(s: &Stack, account: &str) -> i64 {
    s.get(&format!("/v1/admin/accounts/{account}"), Some(&s.operator_key)).await.body["wallet"]["balance_micros"].as_i64().unwrap_or(-1)
}

/// Moves the balance to exactly `target` micro-USD.
async fn set_balance(s: &Stack, account: &str, target: i64) {
    let now = balance(s, account).await;
    let delta = target - now;
    if delta != 0 {
        let usd = format!("{}{}.{:06}", if delta < 0 { "-" } else { "" }, delta.abs() / 1_000_000, delta.abs() % 1_000_000);
        let r = s
            .post(
                &format!("/v1/admin/accounts/{account}/credits"),
                Some(&s.operator_key),
                json!({"amount_usd": usd, "reason": "test", "idempotency_key": unique()}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(balance(s, account).await, target);
}

fn body(text: &str) -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn empty_balance_is_402_in_the_cli_shape_and_nothing_is_forwarded() {
    let s = stack();
    let (account, key) = s.new_account("broke").await;
    set_balance(&s, &account, 120_000).await;
    let marker = format!("broke {}", unique());
    let r = s
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({"model": "gpt-4o", "max_tokens": 100000, "messages": [{"role": "user", "content": marker}]}),
        )
        .await;
    r.assert_error(402, "INSUFFICIENT_CREDITS");
    assert_eq!(r.body["error"]["type"], "insufficient_credits");
    assert_eq!(r.body["error"]["message"], "Insufficient credits. Balance: $0.12.");
    assert_eq!(r.body["error"]["balance_usd"], 0.12);
    let seen = s.fakes_requests("openai", "/v1/chat/completions").await;
    assert!(!seen.iter().any(|q| q["body"].as_str().is_some_and(|b| b.contains(&marker))), "nothing reached the upstream");
    assert_eq!(balance(&s, &account).await, 120_000, "nothing charged");
    // Anthropic clients get the same refusal in their shape.
    let m = s
        .post(
            "/v1/messages",
            Some(&key),
            json!({"model": "claude-sonnet-4-5", "max_tokens": 100000, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(m.status, 402);
    assert_eq!(m.body["error"]["type"], "billing_error");
}

#[tokio::test]
async fn concurrent_requests_never_overdraw_and_the_ledger_reconciles() {
    let s = stack();
    let ses = s.register("race-money").await;
    let (_, key) = s.create_key(&ses.token, "race").await;
    let account = ses.account_id.clone();
    // What one such request really costs.
    let probe = s.http.post(s.url("/v1/chat/completions")).bearer_auth(&key).json(&body("same text")).send().await.expect("sent");
    let one: i64 = {
        let c = probe.headers()["x-dexto-cost-usd"].to_str().unwrap_or("0").replace('.', "");
        c.parse().unwrap_or(0)
    };
    assert!(one > 0);
    // Let the key's bucket refill (burst 10) so no request meets a 429.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A balance that covers exactly N of them; 5N at once.
    let n = 2;
    set_balance(&s, &account, n * one).await;
    let start = balance(&s, &account).await;
    let calls = (0..5 * n).map(|_| s.post("/v1/chat/completions", Some(&key), body("same text")));
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.status == 200).count() as i64;
    let refused = results.iter().filter(|r| r.status == 402).count() as i64;
    assert!(ok <= n, "{ok} served with credit for {n}: {:?}", results.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(ok >= 1);
    assert_eq!(
        ok + refused,
        5 * n,
        "every other request was refused for credit: {:?}",
        results.iter().map(|r| (r.status, r.body["error"]["code"].clone())).collect::<Vec<_>>()
    );
    let end = balance(&s, &account).await;
    assert!(end >= 0);
    // start = end + Σ ledger costs, to the micro-USD (the probe included).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let u = s.get("/me/usage", Some(&ses.token)).await;
    let total: i64 = u.body["total_cost"].as_str().unwrap_or("0").replace('.', "").parse().unwrap_or(-1);
    assert_eq!(start - end, total - one, "{}", u.text);
    assert_eq!(u.body["total_requests"], ok + 1);
}

#[tokio::test]
async fn answers_carry_cost_and_remaining_credit() {
    let s = stack();
    let ses = s.register("headers").await;
    let (_, key) = s.create_key(&ses.token, "h").await;
    let r = s.http.post(s.url("/v1/chat/completions")).bearer_auth(&key).json(&body("headers please")).send().await.expect("sent");
    let h = r.headers().clone();
    for name in [
        "x-dexto-credits-remaining",
        "x-dexto-cost-usd",
        "x-dexto-request-id",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ] {
        assert!(h.get(name).is_some(), "{name} missing");
    }
    let timing = h.get("server-timing").and_then(|v| v.to_str().ok()).unwrap_or_default();
    for part in ["limits;dur=", "wallet-reserve;dur=", "upstream;dur=", "wallet-settle;dur="] {
        assert!(timing.contains(part), "Server-Timing lacks {part}: {timing}");
    }
    let remaining = h["x-dexto-credits-remaining"].to_str().unwrap_or("").to_string();
    let cost = h["x-dexto-cost-usd"].to_str().unwrap_or("").to_string();
    assert!(cost.starts_with("0.0000"), "{cost}");
    let b = s.get("/api/billing/balance", Some(&ses.token)).await;
    assert_eq!(b.body["balance"], remaining.as_str(), "headers agree with the balance");
    assert!(h.get("x-dexto-low-balance").is_none(), "$5 is not low");

    // Streams: the last chunk before [DONE] carries cost and remaining credit.
    let r = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "stream bill"}]}))
        .send()
        .await
        .expect("sent");
    assert!(r.headers().get("x-dexto-credits-remaining").is_some());
    let text = r.text().await.unwrap_or_default();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let billing: serde_json::Value = serde_json::from_str(events[events.len() - 2]).unwrap_or_default();
    assert!(billing["dexto"]["cost_usd"].is_string(), "{text}");
    let after = s.get("/api/billing/balance", Some(&ses.token)).await;
    assert_eq!(billing["dexto"]["credits_remaining_usd"], after.body["balance"]);
}

#[tokio::test]
async fn a_failed_upstream_releases_the_hold() {
    let s = stack();
    let (account, key) = s.new_account("release").await;
    let before = balance(&s, &account).await;
    let marker = format!("release {}", unique());
    // A refusal by the upstream (a 400 does not trip the circuit breaker,
    // which other tests running now depend on).
    s.fakes_script(json!({"provider": "openrouter", "path": "/v1/chat/completions", "status": 400, "body": {"error": {"message": "no"}}, "times": 1, "body_contains": marker})).await;
    let r = s
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({"model": "meta-llama/llama-3.3-70b-instruct", "messages": [{"role": "user", "content": marker}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let detail = s.get(&format!("/v1/admin/accounts/{account}"), Some(&s.operator_key)).await;
    assert_eq!(detail.body["wallet"]["balance_micros"], before, "nothing charged");
    assert_eq!(detail.body["wallet"]["available_micros"], before, "nothing held");
}

#[tokio::test]
async fn low_balance_warns_and_is_announced_once() {
    let s = stack();
    let (account, key) = s.new_account("low").await;
    set_balance(&s, &account, 1_000_005).await;
    // The first request crosses below $1; the second stays below.
    for i in 0..2 {
        let r = s.http.post(s.url("/v1/chat/completions")).bearer_auth(&key).json(&body(&format!("low {i}"))).send().await.expect("sent");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers().get("x-dexto-low-balance").and_then(|v| v.to_str().ok()), Some("true"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let jobs = s.get("/v1/admin/jobs?type=low_balance&limit=200", Some(&s.operator_key)).await;
    let mine =
        jobs.body["jobs"].as_array().map(|j| j.iter().filter(|j| j["result"]["account_id"] == account.as_str()).count()).unwrap_or(0);
    assert_eq!(mine, 1, "one event per crossing: {}", jobs.text);
}

#[tokio::test]
async fn plan_allowance_pays_before_any_balance() {
    let s = stack();
    let email = format!("basic-{}@e2e.test", unique());
    let a =
        s.post("/v1/admin/accounts", Some(&s.operator_key), json!({"email": email, "password": "e2e-password-123", "plan": "basic"})).await;
    let key = a.body["api_key"]["key"].as_str().unwrap_or_default().to_string();
    let account = a.body["account"]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(balance(&s, &account).await, 0, "plans get no prepaid credit");
    let r = s.http.post(s.url("/v1/chat/completions")).bearer_auth(&key).json(&body("on the plan")).send().await.expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-dexto-cost-usd"], "0.000000", "inside the 5M included tokens");
    let detail = s.get(&format!("/v1/admin/accounts/{account}"), Some(&s.operator_key)).await;
    assert!(detail.body["wallet"]["allowance_used_tokens"].as_u64().unwrap_or(0) > 0, "{}", detail.text);
}

#[tokio::test]
async fn tokens_per_minute_are_held_while_a_request_runs_and_returned_after() {
    let s = stack();
    let (_, key) = s.new_account("tpm").await;
    let marker = format!("tpm {}", unique());
    // A slow stream holds 150k tokens of the key's 200k a minute…
    s.fakes_script(
        json!({"provider": "openai", "path": "/v1/chat/completions", "chunk_delay_ms": 150, "times": 1, "body_contains": marker}),
    )
    .await;
    let slow = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 150000, "messages": [{"role": "user", "content": marker}]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(slow.status().as_u16(), 200);
    // …so another big one is refused while it runs.
    let second = s
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({"model": "gpt-4o-mini", "max_tokens": 150000, "messages": [{"role": "user", "content": "second"}]}),
        )
        .await;
    second.assert_error(429, "tokens_per_minute_exceeded");
    assert!(second.header("retry-after").is_some());
    let _ = slow.text().await;
    // Settled to the real count, the unused tokens come back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let third = s
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({"model": "gpt-4o-mini", "max_tokens": 150000, "messages": [{"role": "user", "content": "third"}]}),
        )
        .await;
    assert_eq!(third.status, 200, "{}", third.text);
}

#[tokio::test]
async fn the_allowance_to_overage_switch_lands_on_the_exact_token() {
    let s = stack();
    // A Basic account: 1,000 included tokens in the test stack (PLAN_INCLUDED_TOKENS).
    let email = format!("switch-{}@e2e.test", unique());
    let a =
        s.post("/v1/admin/accounts", Some(&s.operator_key), json!({"email": email, "password": "e2e-password-123", "plan": "basic"})).await;
    let key = a.body["api_key"]["key"].as_str().unwrap_or_default().to_string();
    let account = a.body["account"]["id"].as_str().unwrap_or_default().to_string();
    let path = format!("/v1/admin/accounts/{account}");
    // First request: well inside the allowance.
    let r1 = s
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "w ".repeat(800)}]}),
        )
        .await;
    assert_eq!(r1.status, 200, "{}", r1.text);
    let (in1, out1) =
        (r1.body["usage"]["prompt_tokens"].as_u64().unwrap_or(0), r1.body["usage"]["completion_tokens"].as_u64().unwrap_or(0));
    assert!(in1 + out1 < 1000, "{in1} + {out1}");
    assert_eq!(s.get(&path, Some(&s.operator_key)).await.body["wallet"]["allowance_used_tokens"], in1 + out1);
    // Second request: crosses the line; input is drawn first, then output.
    let r2 = s
        .post(
            "/v1/chat/completions",
            Some(&key),
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x ".repeat(1200)}]}),
        )
        .await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    let (in2, out2) =
        (r2.body["usage"]["prompt_tokens"].as_u64().unwrap_or(0), r2.body["usage"]["completion_tokens"].as_u64().unwrap_or(0));
    let left = 1000 - (in1 + out1);
    let (allow_in, allow_out) = (in2.min(left), out2.min(left.saturating_sub(in2)));
    let w = s.get(&path, Some(&s.operator_key)).await.body["wallet"].clone();
    assert_eq!(w["allowance_used_tokens"], 1000, "{w}");
    assert_eq!(w["overage_input_tokens"], in2 - allow_in, "{w}");
    assert_eq!(w["overage_output_tokens"], out2 - allow_out, "{w}");
    // Priced at Basic's overage ($3 / $15 per 1M), rounded up.
    let expected = ((in2 - allow_in) * 3_000_000 + (out2 - allow_out) * 15_000_000).div_ceil(1_000_000);
    assert_eq!(w["overage_micros"], expected, "{w}");
    assert_eq!(r2.headers.get("x-dexto-cost-usd").and_then(|v| v.to_str().ok()), Some(format!("0.{expected:06}").as_str()));
}
