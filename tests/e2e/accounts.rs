//! Accounts, keys and roles through real routes (D1 writes and reads).

use serde_json::json;

use crate::common::{stack, unique};

#[tokio::test]
async fn operator_creates_an_account_whose_key_works() {
    let s = stack();
    let email = format!("Owner-{}@E2E.test", unique());
    let a = s
        .post(
            "/v1/admin/accounts",
            Some(&s.operator_key),
            json!({"email": email, "password": "e2e-password-123", "plan": "basic", "key_name": "laptop"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let key = a.body["api_key"]["key"].as_str().unwrap_or_default().to_string();
    assert!(key.starts_with("pk_live_") && key.len() >= 40, "{key}");
    assert_eq!(a.body["api_key"]["last4"].as_str(), Some(&key[key.len() - 4..]));
    let account_id = a.body["account"]["id"].as_str().unwrap_or_default().to_string();

    let me = s.get("/v1/me", Some(&key)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["account"]["id"], account_id.as_str());
    assert_eq!(me.body["account"]["plan"], "basic");
    assert_eq!(me.body["user"]["email"], email.to_ascii_lowercase());
    assert_eq!(me.body["user"]["role"], "owner");
    assert_eq!(me.body["key"]["name"], "laptop");

    // The operator sees it, with the key only as display parts.
    let detail = s.get(&format!("/v1/admin/accounts/{account_id}"), Some(&s.operator_key)).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    assert_eq!(detail.body["account"]["plan"], "basic");
    assert!(!detail.text.contains(&key), "the full key is shown once only");
    assert_eq!(detail.body["api_keys"][0]["display"], format!("{}…{}", &key[..12], &key[key.len() - 4..]));

    let v = s.get("/keys/validate", Some(&key)).await;
    assert_eq!(v.status, 200);
    assert_eq!(v.body["valid"], true);
    assert_eq!(v.body["accountId"], account_id.as_str());
}

#[tokio::test]
async fn duplicate_email_is_409() {
    let s = stack();
    let email = format!("dup-{}@e2e.test", unique());
    let body = json!({"email": email, "password": "e2e-password-123"});
    assert_eq!(s.post("/v1/admin/accounts", Some(&s.operator_key), body.clone()).await.status, 201);
    s.post("/v1/admin/accounts", Some(&s.operator_key), body).await.assert_error(409, "email_taken");
}

#[tokio::test]
async fn missing_bad_and_malformed_keys_are_401() {
    let s = stack();
    s.get("/v1/me", None).await.assert_error(401, "invalid_api_key");
    s.get("/v1/me", Some("pk_live_000000000000000000000000000000000")).await.assert_error(401, "invalid_api_key");
    // Anything that is not a key is read as a session token, and refused as one.
    s.get("/v1/me", Some("not-a-key")).await.assert_error(401, "invalid_token");
    let r = s.http.get(s.url("/v1/me")).header("authorization", "Basic abc").send().await.expect("sent");
    crate::common::answer(r).await.assert_error(401, "invalid_api_key");
    // x-api-key works as well as Authorization (Anthropic SDK style).
    let r = s.http.get(s.url("/v1/me")).header("x-api-key", &s.demo_key).send().await.expect("sent");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn admin_routes_need_the_operator_role() {
    let s = stack();
    let a = s.get(&format!("/v1/admin/accounts/{}", s.demo_account), Some(&s.demo_key)).await;
    a.assert_error(403, "operator_required");
    s.post("/v1/admin/accounts", Some(&s.demo_key), json!({"email": "x@y.test", "password": "e2e-password-123"}))
        .await
        .assert_error(403, "operator_required");
    s.get("/v1/admin/jobs", None).await.assert_error(401, "invalid_api_key");
    s.send("DELETE", "/v1/admin/jobs", Some(&s.demo_key), None).await.assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn one_account_cannot_read_another() {
    let s = stack();
    let (a_id, a_key) = s.new_account("tenant-a").await;
    let (b_id, _b_key) = s.new_account("tenant-b").await;
    let me = s.get("/v1/me", Some(&a_key)).await;
    assert_eq!(me.body["account"]["id"], a_id.as_str());
    assert!(!me.text.contains(&b_id));
    s.get(&format!("/v1/admin/accounts/{b_id}"), Some(&a_key)).await.assert_error(403, "operator_required");
}

#[tokio::test]
async fn bootstrap_runs_once_and_checks_its_token() {
    let s = stack();
    let body = json!({"email": format!("op2-{}@e2e.test", unique()), "password": "e2e-password-123"});
    s.post("/v1/admin/bootstrap", Some("wrong-token"), body.clone()).await.assert_error(401, "invalid_api_key");
    s.post("/v1/admin/bootstrap", None, body.clone()).await.assert_error(401, "invalid_api_key");
    s.post("/v1/admin/bootstrap", Some(&s.bootstrap_token), body).await.assert_error(409, "already_bootstrapped");
}

#[tokio::test]
async fn unknown_account_is_404() {
    let s = stack();
    s.get("/v1/admin/accounts/acct_nope", Some(&s.operator_key)).await.assert_error(404, "not_found");
}
