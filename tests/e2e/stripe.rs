//! Stripe: checkout, verified webhooks processed once, subscriptions applied
//! in event order, suspension on payment failure, overage to the meter once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{stack, unique, Stack};

fn webhook_secret() -> String {
    crate::common::stack_json()["stripe_webhook_secret"].as_str().unwrap_or_default().to_string()
}

async fn balance(s: &Stack, account: &str) -> i64 {
    s.get(&format!("/v1/admin/accounts/{account}"), Some(&s.operator_key)).await.body["wallet"]["balance_micros"].as_i64().unwrap_or(-1)
}

async fn fakes_post(s: &Stack, path: &str, body: Value) -> Value {
    let r = s.http.post(format!("{}{path}", s.fakes)).json(&body).send().await.expect("fakes reachable");
    assert!(r.status().is_success(), "fakes {path}: {}", r.status());
    r.json().await.unwrap_or_default()
}

/// Sends an event through the fake's signer to our webhook.
async fn send_event(s: &Stack, kind: &str, object: Value, extra: Value) -> Value {
    let mut body = json!({"webhook_url": s.url("/webhooks/stripe"), "secret": webhook_secret(), "type": kind, "object": object});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    fakes_post(s, "/__fakes/stripe/events/send", body).await
}

async fn wait_for<F: Fn(&Value) -> bool>(s: &Stack, path: &str, token: &str, ok: F) -> Value {
    for _ in 0..60 {
        let r = s.get(path, Some(token)).await;
        if ok(&r.body) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{path} never reached the expected state");
}

/// The customer id the fake created for this account (from its recording).
async fn customer_of(s: &Stack, session_token: &str) -> String {
    let r = s.post("/v1/billing/portal", Some(session_token), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["url"].as_str().is_some_and(|u| u.starts_with("https://")));
    let reqs = s.fakes_requests("stripe", "/v1/billing_portal/sessions").await;
    let body = reqs.last().and_then(|q| q["body"].as_str()).unwrap_or_default().to_string();
    body.split('&').find_map(|kv| kv.strip_prefix("customer=")).unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_credit_pack_is_credited_once_though_delivered_five_times_at_once() {
    let s = stack();
    let ses = s.register("pack").await;
    let r = s.post("/api/stripe/create-checkout-session", Some(&ses.token), json!({"pack": 10})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["sessionUrl"].as_str().is_some_and(|u| u.starts_with("https://checkout.stripe.com/")));
    let session = r.body["sessionId"].as_str().unwrap_or_default().to_string();
    // What reached Stripe: a form body, our key, an idempotency key, a pinned version.
    let sent = s.fakes_requests("stripe", "/v1/checkout/sessions").await;
    let mine = sent.iter().find(|q| q["body"].as_str().is_some_and(|b| b.contains(&ses.account_id))).expect("session created");
    let form = mine["body"].as_str().unwrap_or_default();
    assert!(form.contains("mode=payment") && form.contains("unit_amount%5D=1000") || form.contains("unit_amount]=1000"), "{form}");
    assert!(mine["headers"]["idempotency-key"].is_string());
    assert!(mine["headers"]["stripe-version"].is_string());
    assert_eq!(mine["headers"]["authorization"], "Bearer sk_test_local_fake");

    let before = balance(&s, &ses.account_id).await;
    let out = fakes_post(
        &s,
        &format!("/__fakes/stripe/checkout/{session}/complete"),
        json!({"webhook_url": s.url("/webhooks/stripe"), "secret": webhook_secret(), "deliveries": 5, "concurrent": true}),
    )
    .await;
    let statuses: Vec<i64> =
        out["deliveries"].as_array().map(|d| d.iter().filter_map(|x| x["status"].as_i64()).collect()).unwrap_or_default();
    assert_eq!(statuses.len(), 5, "{out}");
    assert!(statuses.iter().all(|c| *c == 200), "every delivery acknowledged: {statuses:?}");
    wait_for(&s, "/api/billing/balance", &ses.token, |b| b["balance"] == "15.000000").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(balance(&s, &ses.account_id).await, before + 10_000_000, "credited exactly once");
}

#[tokio::test]
async fn bad_signatures_are_refused_and_change_nothing() {
    let s = stack();
    let ses = s.register("badsig").await;
    let r = s
        .post("/api/billing/checkout-session", Some(&ses.token), json!({"credits_usd": 25, "return_url": "https://example.com/billing"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let session = r.body["checkout_session_id"].as_str().unwrap_or_default().to_string();
    assert!(r.body["checkout_url"].is_string());
    let object = json!({"id": session, "object": "checkout.session", "mode": "payment", "status": "complete", "payment_status": "paid", "amount_total": 2500, "currency": "usd", "client_reference_id": ses.account_id, "metadata": {"account_id": ses.account_id, "kind": "credit_pack", "credit_micros": "25000000"}});
    let before = balance(&s, &ses.account_id).await;
    for bad in [
        json!({"tamper": true}),
        json!({"timestamp_offset_secs": -301}),
        json!({"timestamp_offset_secs": 400}),
        json!({"wrong_secret": true}),
    ] {
        let out = send_event(&s, "checkout.session.completed", object.clone(), bad.clone()).await;
        assert_eq!(out["deliveries"][0]["status"], 400, "{bad}: {out}");
    }
    let r = s.http.post(s.url("/webhooks/stripe")).body(object.to_string()).send().await.expect("sent");
    assert_eq!(r.status().as_u16(), 400, "no signature header");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(balance(&s, &ses.account_id).await, before, "nothing credited");
    // The same event, signed right, does land.
    let ok = send_event(&s, "checkout.session.completed", object, json!({})).await;
    assert_eq!(ok["deliveries"][0]["status"], 200);
    wait_for(&s, "/api/billing/balance", &ses.token, |b| b["balance"] == "30.000000").await;
}

#[tokio::test]
async fn a_signature_made_by_the_official_stripe_library_is_accepted() {
    let s = stack();
    let ses = s.register("official").await;
    let r = s.post("/api/stripe/create-checkout-session", Some(&ses.token), json!({"pack": 5})).await;
    let session = r.body["sessionId"].as_str().unwrap_or_default().to_string();
    let event = json!({
        "id": format!("evt_official_{}", unique()), "object": "event", "api_version": "2025-09-30.clover", "created": 1_795_300_000, "livemode": false,
        "type": "checkout.session.completed", "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
        "data": {"object": {"id": session, "object": "checkout.session", "mode": "payment", "status": "complete", "payment_status": "paid", "amount_total": 500, "currency": "usd", "client_reference_id": ses.account_id, "metadata": {"account_id": ses.account_id, "kind": "credit_pack", "credit_micros": "5000000"}}},
    });
    let payload = event.to_string();
    let script = "const Stripe=require('stripe');const s=new Stripe('sk_test_unused');process.stdout.write(s.webhooks.generateTestHeaderString({payload:process.env.PAYLOAD,secret:process.env.SECRET}))";
    let out = std::process::Command::new("node")
        .current_dir(&s.repo_root)
        .env("PAYLOAD", &payload)
        .env("SECRET", webhook_secret())
        .args(["-e", script])
        .output()
        .expect("node runs");
    let header = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(header.starts_with("t=") && header.contains(",v1="), "{header} {}", String::from_utf8_lossy(&out.stderr));
    let r = s
        .http
        .post(s.url("/webhooks/stripe"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    wait_for(&s, "/api/billing/balance", &ses.token, |b| b["balance"] == "10.000000").await;
}

#[tokio::test]
async fn subscription_events_out_of_order_end_in_the_right_plan() {
    let s = stack();
    let ses = s.register("order").await;
    let customer = customer_of(&s, &ses.token).await;
    let now = 1_795_320_000i64;
    let sub = |status: &str, plan: &str| {
        json!({"id": format!("sub_order_{}", ses.account_id), "object": "subscription", "customer": customer, "status": status,
               "current_period_start": now, "current_period_end": now + 30 * 86_400, "cancel_at_period_end": false,
               "metadata": {"account_id": ses.account_id, "plan": plan},
               "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_1", "lookup_key": format!("dex_{plan}_monthly")}, "current_period_start": now, "current_period_end": now + 30 * 86_400}]}})
    };
    // `updated` (to Pro) arrives before `created` (Basic, incomplete).
    let a = send_event(&s, "customer.subscription.updated", sub("active", "pro"), json!({"created": now + 60})).await;
    assert_eq!(a["deliveries"][0]["status"], 200);
    let b = send_event(&s, "customer.subscription.created", sub("incomplete", "basic"), json!({"created": now})).await;
    assert_eq!(b["deliveries"][0]["status"], 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = wait_for(&s, "/v1/billing/subscription", &ses.token, |v| v["status"] == "active").await;
    assert_eq!(got["plan"], "pro", "{got}");
    // The plan's first activation enqueued identity provisioning.
    let jobs = s.get("/v1/admin/jobs?type=provision_identity&limit=200", Some(&s.operator_key)).await;
    assert!(jobs.text.contains(&ses.account_id), "{}", jobs.text);
    // Deleted: back to prepaid, deprovisioning enqueued.
    let d = send_event(&s, "customer.subscription.deleted", sub("canceled", "pro"), json!({"created": now + 120})).await;
    assert_eq!(d["deliveries"][0]["status"], 200);
    let got = wait_for(&s, "/v1/billing/subscription", &ses.token, |v| v["status"] == "canceled").await;
    assert_eq!(got["plan"], "prepaid");
}

#[tokio::test]
async fn payment_failure_suspends_and_payment_success_restores() {
    let s = stack();
    let ses = s.register("dunning").await;
    let (_, key) = s.create_key(&ses.token, "k").await;
    let customer = customer_of(&s, &ses.token).await;
    let invoice = |status: &str| json!({"id": format!("in_{}", unique()), "object": "invoice", "customer": customer, "status": status, "billing_reason": "subscription_cycle", "period_start": 1_795_000_000, "period_end": 1_797_600_000});
    let f = send_event(&s, "invoice.payment_failed", invoice("open"), json!({})).await;
    assert_eq!(f["deliveries"][0]["status"], 200);
    // Polled with the session (keys are rate limited; a session is not).
    for _ in 0..40 {
        if s.get("/v1/me", Some(&ses.token)).await.status == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    s.get("/v1/me", Some(&key)).await.assert_error(403, "account_suspended");
    let p =
        s.post("/v1/chat/completions", Some(&key), json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(p.status, 403, "the proxy refuses a suspended account: {}", p.text);
    let ok = send_event(&s, "invoice.paid", invoice("paid"), json!({})).await;
    assert_eq!(ok["deliveries"][0]["status"], 200);
    // Suspension ended the user's sessions; the key works again once paid
    // (polled at the key's sustained rate of one a second).
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        if s.get("/v1/me", Some(&key)).await.status == 200 {
            s.get("/v1/me", Some(&ses.token)).await.assert_error(401, "invalid_token");
            return;
        }
    }
    panic!("payment success did not restore the account");
}

#[tokio::test]
async fn checkout_input_is_checked_before_stripe_is_called() {
    let s = stack();
    let ses = s.register("checkout-bad").await;
    s.post("/api/stripe/create-checkout-session", Some(&ses.token), json!({"pack": 7})).await.assert_error(400, "invalid_pack");
    s.post("/api/billing/checkout-session", Some(&ses.token), json!({"credits_usd": 0})).await.assert_error(400, "invalid_amount");
    s.post("/api/billing/checkout-session", Some(&ses.token), json!({"credits_usd": 10, "return_url": "javascript:alert(1)"}))
        .await
        .assert_error(400, "invalid_return_url");
    s.post("/v1/billing/subscribe", Some(&ses.token), json!({"plan": "platinum"})).await.assert_error(400, "invalid_plan");
    s.post("/api/stripe/create-checkout-session", None, json!({"pack": 5})).await.assert_error(401, "invalid_api_key");
    // Stripe failing is a clean gateway error, nothing recorded as pending.
    s.fakes_script(
        json!({"provider": "stripe", "path": "/v1/checkout/sessions", "status": 500, "times": 1, "body_contains": ses.account_id}),
    )
    .await;
    let r = s.post("/api/stripe/create-checkout-session", Some(&ses.token), json!({"pack": 5})).await;
    r.assert_error(502, "stripe_unavailable");
}
