//! Usage reports in the shape the Dexto CLI reads, and the operators' view.

use std::time::Duration;

use serde_json::json;

use crate::common::stack;

#[tokio::test]
async fn me_usage_reports_the_period_in_the_cli_shape() {
    let s = stack();
    // Reports are read with the session (keys are rate limited; sessions are
    // not), the proxy is called with a key of the same account.
    let ses = s.register("usage").await;
    let account = ses.account_id.clone();
    let (_, key) = s.create_key(&ses.token, "usage").await;
    s.post(
        &format!("/v1/admin/accounts/{account}/credits"),
        Some(&s.operator_key),
        json!({"amount_usd": "5", "reason": "test", "idempotency_key": "u1"}),
    )
    .await;
    for model in ["gpt-4o-mini", "claude-haiku-4-5"] {
        let r = s
            .post("/v1/chat/completions", Some(&key), json!({"model": model, "messages": [{"role": "user", "content": "usage please"}]}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // The ledger is written just after each answer.
    let mut u = s.get("/me/usage", Some(&ses.token)).await;
    for _ in 0..40 {
        if u.body["total_requests"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        u = s.get("/me/usage", Some(&ses.token)).await;
    }
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.body["mtd_usage"]["total_requests"], 2, "{}", u.text);
    assert!(u.body["credits_usd"].is_number());
    let by_model = &u.body["mtd_usage"]["by_model"];
    for model in ["gpt-4o-mini", "claude-haiku-4-5"] {
        assert_eq!(by_model[model]["requests"], 1, "{}", u.text);
        assert!(by_model[model]["tokens"].as_i64().unwrap_or(0) > 0);
        assert!(by_model[model]["cost_usd"].is_number());
    }
    let recent = u.body["recent"].as_array().cloned().unwrap_or_default();
    assert_eq!(recent.len(), 2);
    for r in &recent {
        for f in ["timestamp", "model", "cost_usd", "input_tokens", "output_tokens"] {
            assert!(!r[f].is_null(), "recent.{f}");
        }
    }
    assert_eq!(u.body["total_requests"], 2);
    assert!(u.body["total_cost"].as_str().is_some_and(|c| c.contains('.')));
    // The aliases answer the same; ?limit and a bad period.
    for path in ["/api/account/usage", "/v1/usage", "/v1/billing/usage"] {
        let a = s.get(path, Some(&ses.token)).await;
        assert_eq!(a.body["mtd_usage"]["total_requests"], 2, "{path}");
    }
    let one = s.get("/me/usage?limit=1", Some(&key)).await; // a key works too
    assert_eq!(one.body["recent"].as_array().map(Vec::len), Some(1));
    s.get("/me/usage?start=yesterday", Some(&ses.token)).await.assert_error(400, "invalid_period");
    s.get("/me/usage?start=2026-11-10&end=2026-11-01", Some(&ses.token)).await.assert_error(400, "invalid_period");
    let empty = s.get("/me/usage?start=2020-01-01&end=2020-02-01", Some(&ses.token)).await;
    assert_eq!(empty.body["mtd_usage"]["total_requests"], 0);
    // Balance for `dexto billing`.
    let b = s.get("/api/billing/balance", Some(&ses.token)).await;
    assert_eq!(b.status, 200);
    assert!(b.body["credits_usd"].is_number());
    // Another account sees none of it.
    let (_, other) = s.new_account("usage-other").await;
    let o = s.get("/me/usage", Some(&other)).await;
    assert_eq!(o.body["mtd_usage"]["total_requests"], 0);
    // Operators see the aggregate.
    let all = s.get("/v1/admin/usage", Some(&s.operator_key)).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert!(all.body["total_requests"].as_i64().unwrap_or(0) >= 2);
    s.get("/v1/admin/usage", Some(&key)).await.assert_error(403, "operator_required");
}
