//! Sign-in: register, login, refresh rotation and reuse, logout, tokens,
//! throttling, phone codes through the Twilio Verify fake.

use serde_json::json;

use crate::common::{answer, stack, unique};

#[tokio::test]
async fn register_signs_in_and_me_answers() {
    let s = stack();
    let ses = s.register("reg").await;
    assert!(ses.token.starts_with("eyJ"));
    assert!(ses.refresh.starts_with("rt_"));
    let me = s.get("/v1/me", Some(&ses.token)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["user"]["email"], ses.email);
    assert_eq!(me.body["account"]["id"], ses.account_id.as_str());
    assert_eq!(me.body["account"]["status"], "active");
    assert_eq!(me.body["account"]["plan"], "prepaid");
    // The same e-mail again, in any case, is taken.
    s.post("/v1/auth/register", None, json!({"email": ses.email.to_uppercase(), "password": "another-password-1"}))
        .await
        .assert_error(409, "email_taken");
}

#[tokio::test]
async fn register_refuses_bad_input_and_writes_nothing() {
    let s = stack();
    let email = format!("bad-{}@e2e.test", unique());
    s.post("/v1/auth/register", None, json!({"email": email, "password": "short"})).await.assert_error(400, "weak_password");
    s.post("/v1/auth/register", None, json!({"email": "not-an-email", "password": "long-enough-pw"}))
        .await
        .assert_error(400, "invalid_email");
    s.post("/v1/auth/register", None, json!({"email": email})).await.assert_error(400, "invalid_request");
    let ok = s.post("/v1/auth/register", None, json!({"email": email, "password": "long-enough-pw"})).await;
    assert_eq!(ok.status, 201, "the refused attempts wrote nothing: {}", ok.text);
}

#[tokio::test]
async fn login_does_not_reveal_whether_an_email_exists() {
    let s = stack();
    let ses = s.register("login").await;
    let ok = s.post("/v1/auth/login", None, json!({"email": ses.email, "password": ses.password})).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.body["token"].as_str().is_some_and(|t| t.starts_with("eyJ")));
    let wrong = s.post("/v1/auth/login", None, json!({"email": ses.email, "password": "wrong-password-1"})).await;
    let unknown =
        s.post("/v1/auth/login", None, json!({"email": format!("nobody-{}@e2e.test", unique()), "password": "wrong-password-1"})).await;
    wrong.assert_error(401, "invalid_credentials");
    unknown.assert_error(401, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn password_guessing_is_throttled_per_email() {
    let s = stack();
    let ses = s.register("guess").await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..8 {
        let a = s.post("/v1/auth/login", None, json!({"email": ses.email, "password": format!("guess-number-{i}")})).await;
        statuses.push(a.status);
        if a.status == 429 {
            limited = Some(a);
        }
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    let limited = limited.expect("guessing is stopped");
    limited.assert_error(429, "rate_limit_exceeded");
    assert!(limited.header("retry-after").is_some());
    // While throttled even the right password waits: guessing gains nothing.
    let right = s.post("/v1/auth/login", None, json!({"email": ses.email, "password": ses.password})).await;
    assert_eq!(right.status, 429);
    // Another e-mail is unaffected.
    let other = s.register("guess-other").await;
    assert_eq!(s.post("/v1/auth/login", None, json!({"email": other.email, "password": other.password})).await.status, 200);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = stack();
    let ses = s.register("rotate").await;
    let r1 = s.post("/v1/auth/refresh", None, json!({"refresh_token": ses.refresh})).await;
    assert_eq!(r1.status, 200, "{}", r1.text);
    let rt2 = r1.body["refresh_token"].as_str().unwrap_or_default().to_string();
    let at2 = r1.body["token"].as_str().unwrap_or_default().to_string();
    assert_ne!(rt2, ses.refresh);
    assert_eq!(s.get("/v1/me", Some(&at2)).await.status, 200);

    // The first token again: reuse. Refused, and the whole family ends.
    s.post("/v1/auth/refresh", None, json!({"refresh_token": ses.refresh})).await.assert_error(401, "invalid_refresh_token");
    s.post("/v1/auth/refresh", None, json!({"refresh_token": rt2})).await.assert_error(401, "invalid_refresh_token");
    s.get("/v1/me", Some(&at2)).await.assert_error(401, "invalid_token");
    // Other sessions of the same user are untouched.
    let again = s.post("/v1/auth/login", None, json!({"email": ses.email, "password": ses.password})).await;
    assert_eq!(s.get("/v1/me", Some(again.body["token"].as_str().unwrap_or_default())).await.status, 200);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_yield_one_session() {
    let s = stack();
    let ses = s.register("race").await;
    let calls = (0..5).map(|_| s.post("/v1/auth/refresh", None, json!({"refresh_token": ses.refresh})));
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    assert!(ok <= 1, "at most one refresh wins: {:?}", results.iter().map(|r| r.status).collect::<Vec<_>>());
}

#[tokio::test]
async fn logout_ends_the_session() {
    let s = stack();
    let ses = s.register("logout").await;
    let out = s.post("/v1/auth/logout", None, json!({"refresh_token": ses.refresh})).await;
    assert_eq!(out.status, 200, "{}", out.text);
    s.post("/v1/auth/refresh", None, json!({"refresh_token": ses.refresh})).await.assert_error(401, "invalid_refresh_token");
    s.get("/v1/me", Some(&ses.token)).await.assert_error(401, "invalid_token");
    // Logout by access token works too.
    let again = s.post("/v1/auth/login", None, json!({"email": ses.email, "password": ses.password})).await;
    let token = again.body["token"].as_str().unwrap_or_default().to_string();
    let r = s.http.post(s.url("/v1/auth/logout")).bearer_auth(&token).send().await.expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    s.get("/v1/me", Some(&token)).await.assert_error(401, "invalid_token");
    s.post("/v1/auth/logout", None, json!({})).await.assert_error(400, "missing_refresh_token");
}

#[tokio::test]
async fn forged_and_alg_none_tokens_are_refused() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let s = stack();
    let ses = s.register("forge").await;
    let parts: Vec<&str> = ses.token.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap_or_default()).unwrap_or_default();
    claims["op"] = json!(true);
    let forged_payload = b64.encode(claims.to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    s.get("/v1/admin/users", Some(&tampered)).await.assert_error(401, "invalid_token");
    let none_header = b64.encode(r#"{"alg":"none","typ":"JWT","kid":"local-1"}"#);
    s.get("/v1/admin/users", Some(&format!("{none_header}.{forged_payload}."))).await.assert_error(401, "invalid_token");
    let hs512 = b64.encode(r#"{"alg":"HS512","typ":"JWT","kid":"local-1"}"#);
    s.get("/v1/me", Some(&format!("{hs512}.{}.{}", parts[1], parts[2]))).await.assert_error(401, "invalid_token");
    s.get("/v1/me", Some("eyJ.garbage")).await.assert_error(401, "invalid_token");
    // The genuine token is not an operator's.
    s.get("/v1/admin/users", Some(&ses.token)).await.assert_error(403, "operator_required");
}

#[tokio::test]
async fn api_key_exchanges_for_a_short_token() {
    let s = stack();
    let t = s.post("/v1/auth/token", Some(&s.demo_key), json!({})).await;
    assert_eq!(t.status, 200, "{}", t.text);
    let token = t.body["token"].as_str().unwrap_or_default();
    assert_eq!(t.body["expires_in"], 900);
    let me = s.get("/v1/me", Some(token)).await;
    assert_eq!(me.body["account"]["id"], s.demo_account.as_str());
    // A session token cannot be exchanged; it is not a key.
    let ses = s.register("exchange").await;
    s.post("/v1/auth/token", Some(&ses.token), json!({})).await.assert_error(401, "invalid_api_key");
}

/// One test, in order: the fake's scripted failures match by path, so they
/// must not meet another test's requests to the same Verify service.
#[tokio::test]
async fn phone_login_through_twilio_verify_and_its_failures() {
    let s = stack();
    twilio_failures_map_to_gateway_errors(&s).await;
    let phone = format!("+1555{:07}", u64::from_str_radix(&unique()[8..14], 16).unwrap_or(1) % 10_000_000);
    let sent = s.post("/auth/send-code", None, json!({"phone": phone})).await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    // What reached Twilio: form body, Basic auth with the account SID.
    let reqs = s.fakes_requests("twilio", "/v2/Services/VA00000000000000000000000000000001/Verifications").await;
    let mine =
        reqs.iter().find(|r| r["body"].as_str().is_some_and(|b| b.contains(&phone.replace('+', "%2B")))).expect("Verify was asked to send");
    assert!(mine["headers"]["authorization"].as_str().is_some_and(|a| a.starts_with("Basic ")));
    assert!(mine["body"].as_str().is_some_and(|b| b.contains("Channel=sms")));

    s.post("/auth/verify-code", None, json!({"phone": phone, "code": "000000"})).await.assert_error(401, "invalid_code");
    let code = crate::common::twilio_code(&s, &phone).await;
    let ok = s.post("/auth/verify-code", None, json!({"phone": phone, "code": code})).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let tenant = ok.body["user"]["tenant_id"].as_str().unwrap_or_default().to_string();
    assert!(tenant.starts_with("acct_"));
    assert_eq!(ok.body["user"]["phone"], phone.as_str());
    // The access token carries tenant_id.
    let me = s.get("/v1/me", Some(ok.body["token"].as_str().unwrap_or_default())).await;
    assert_eq!(me.body["user"]["tenant_id"], tenant.as_str());
    assert_eq!(me.body["account"]["kind"], "tenant");
    // The code is used up; a second sign-in of the number is the same user.
    s.post("/auth/verify-code", None, json!({"phone": phone, "code": code})).await.assert_error(401, "code_expired");
    s.post("/auth/send-code", None, json!({"phone": phone})).await;
    let code = crate::common::twilio_code(&s, &phone).await;
    let again = s.post("/auth/verify-code", None, json!({"phone": phone, "code": code})).await;
    assert_eq!(again.body["user"]["id"], ok.body["user"]["id"]);
    // Phone refresh and logout.
    let rt = again.body["refresh_token"].as_str().unwrap_or_default();
    let r = s.post("/auth/refresh", None, json!({"refresh_token": rt})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let out = s.post("/auth/logout", None, json!({"refresh_token": r.body["refresh_token"]})).await;
    assert_eq!(out.status, 200);
}

#[tokio::test]
async fn phone_login_refuses_bad_numbers_without_calling_twilio() {
    let s = stack();
    for bad in ["12345", "+0123456789", "phone", ""] {
        s.post("/auth/send-code", None, json!({"phone": bad})).await.assert_error(400, "invalid_phone");
    }
    s.post("/auth/verify-code", None, json!({"phone": "+14155550100", "code": "12ab"})).await.assert_error(400, "invalid_code");
    // Other tests talk to the fake at the same time, so look for these calls
    // specifically rather than counting.
    let r = s.http.get(format!("{}/__fakes/requests", s.fakes)).query(&[("provider", "twilio")]).send().await.expect("fakes");
    let all: serde_json::Value = r.json().await.unwrap_or_default();
    let bodies: Vec<&str> = all["requests"].as_array().map(|a| a.iter().filter_map(|r| r["body"].as_str()).collect()).unwrap_or_default();
    for needle in ["To=12345&", "To=%2B0123456789", "To=phone", "To=&", "Code=12ab", "To=%2B14155550100"] {
        assert!(!bodies.iter().any(|b| b.contains(needle)), "{needle} reached Twilio");
    }
}

async fn twilio_failures_map_to_gateway_errors(s: &crate::common::Stack) {
    let path = "/v2/Services/VA00000000000000000000000000000001/Verifications";
    s.fakes_script(json!({"provider": "twilio", "path": path, "status": 503, "times": 1})).await;
    s.post("/auth/send-code", None, json!({"phone": "+14155550142"})).await.assert_error(502, "upstream_error");
    s.fakes_script(json!({"provider": "twilio", "path": path, "status": 429, "body": {"code": 60203, "message": "Max send attempts reached", "status": 429}, "times": 1})).await;
    let limited = s.post("/auth/send-code", None, json!({"phone": "+14155550143"})).await;
    limited.assert_error(429, "rate_limit_exceeded");
    s.fakes_script(json!({"provider": "twilio", "path": path, "status": 400, "body": {"code": 60200, "message": "Invalid parameter `To`", "status": 400}, "times": 1})).await;
    s.post("/auth/send-code", None, json!({"phone": "+14155550144"})).await.assert_error(400, "invalid_phone");
    let r = answer(s.http.post(s.url("/auth/send-code")).body("{").send().await.expect("sent")).await;
    r.assert_error(400, "invalid_json");
    s.fakes_reset().await;
}
