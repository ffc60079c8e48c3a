//! Durable Objects: the account's WALLET and the key's LIMITER.

use serde_json::json;

use crate::common::stack;

#[tokio::test]
async fn credit_round_trips_through_the_wallet_once_per_idempotency_key() {
    let s = stack();
    let (account, _) = s.new_account("wallet").await;
    let path = format!("/v1/admin/accounts/{account}/credits");
    // New prepaid accounts start with the stack's STARTING_CREDIT_USD (5).
    let start = s.get(&format!("/v1/admin/accounts/{account}"), Some(&s.operator_key)).await.body["wallet"]["balance_micros"]
        .as_i64()
        .unwrap_or(-1);
    assert_eq!(start, 5_000_000);
    let first = s.post(&path, Some(&s.operator_key), json!({"amount_usd": "2.50", "reason": "goodwill", "idempotency_key": "adj-1"})).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["balance_micros"], 7_500_000);
    assert_eq!(first.body["balance_usd"], "7.500000");
    assert_eq!(first.body["applied"], true);

    // A replay answers the same and changes nothing.
    let replay = s.post(&path, Some(&s.operator_key), json!({"amount_usd": 2.5, "reason": "goodwill", "idempotency_key": "adj-1"})).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body["balance_micros"], 7_500_000);
    assert_eq!(replay.body["applied"], false);

    // The same key with another amount is a conflict, not a second credit.
    s.post(&path, Some(&s.operator_key), json!({"amount_usd": "3", "reason": "x", "idempotency_key": "adj-1"}))
        .await
        .assert_error(409, "idempotency_conflict");

    let detail = s.get(&format!("/v1/admin/accounts/{account}"), Some(&s.operator_key)).await;
    assert_eq!(detail.body["wallet"]["balance_micros"], 7_500_000);
}

#[tokio::test]
async fn concurrent_credits_all_land_exactly() {
    let s = stack();
    let (account, _) = s.new_account("concurrent").await;
    let path = format!("/v1/admin/accounts/{account}/credits");
    // 20 distinct credits of $0.10 and each sent twice, all at once.
    let calls = (0..40).map(|i| {
        let body = json!({"amount_usd": "0.10", "reason": "load", "idempotency_key": format!("c-{}", i % 20)});
        let s = &s;
        let path = &path;
        async move { s.post(path, Some(&s.operator_key), body).await.status }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(statuses.iter().all(|st| *st == 200), "{statuses:?}");
    let detail = s.get(&format!("/v1/admin/accounts/{account}"), Some(&s.operator_key)).await;
    assert_eq!(detail.body["wallet"]["balance_micros"], 7_000_000, "$5 start + 20 × $0.10, duplicates ignored");
}

#[tokio::test]
async fn bad_credits_are_refused_and_change_nothing() {
    let s = stack();
    let (account, _) = s.new_account("badcredit").await;
    let path = format!("/v1/admin/accounts/{account}/credits");
    let op = Some(s.operator_key.as_str());
    s.post(&path, op, json!({"amount_usd": "1.0000001", "reason": "r", "idempotency_key": "k"})).await.assert_error(400, "invalid_amount");
    s.post(&path, op, json!({"amount_usd": "abc", "reason": "r", "idempotency_key": "k"})).await.assert_error(400, "invalid_amount");
    s.post(&path, op, json!({"amount_usd": "1", "reason": " ", "idempotency_key": "k"})).await.assert_error(400, "invalid_reason");
    s.post(&path, op, json!({"amount_usd": "-5.000001", "reason": "r", "idempotency_key": "k2"}))
        .await
        .assert_error(400, "insufficient_balance");
    s.post("/v1/admin/accounts/acct_missing/credits", op, json!({"amount_usd": "1", "reason": "r", "idempotency_key": "k"}))
        .await
        .assert_error(404, "not_found");
    let detail = s.get(&format!("/v1/admin/accounts/{account}"), op).await;
    assert_eq!(detail.body["wallet"]["balance_micros"], 5_000_000);
    // The refused keys were not consumed: they still work.
    let ok = s.post(&path, op, json!({"amount_usd": "1", "reason": "r", "idempotency_key": "k"})).await;
    assert_eq!(ok.body["balance_micros"], 6_000_000, "{}", ok.text);
}

#[tokio::test]
async fn key_rate_limit_is_a_token_bucket_with_retry_after() {
    let s = stack();
    let (_, key) = s.new_account("limits").await;
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..14 {
        let a = s.get("/v1/me", Some(&key)).await;
        statuses.push(a.status);
        if a.status == 429 && refused.is_none() {
            refused = Some(a);
        } else if a.status == 200 {
            assert_eq!(a.header("x-ratelimit-limit-requests"), Some("60"));
            assert!(a.header("x-ratelimit-remaining-requests").is_some());
        }
    }
    // Burst 10 (plus at most a token or two refilled while the loop ran).
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert!((10..=12).contains(&allowed), "{statuses:?}");
    let refused = refused.expect("a 429 after the burst");
    refused.assert_error(429, "rate_limit_exceeded");
    let retry: u64 = refused.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    // One token comes back every second.
    tokio::time::sleep(std::time::Duration::from_millis(1_100 * retry.max(1))).await;
    assert_eq!(s.get("/v1/me", Some(&key)).await.status, 200, "refilled");
    // Another key is not affected: the bucket is per key.
    let (_, other) = s.new_account("limits-other").await;
    assert_eq!(s.get("/v1/me", Some(&other)).await.status, 200);
}
