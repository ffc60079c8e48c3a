//! The edge itself: health, request ids, error shapes, limits, CORS, OpenAPI.

use dex_shared::routes::{openapi_path, ROUTES};
use serde_json::json;

use crate::common::{answer, stack};

#[tokio::test]
async fn health_reports_version_and_d1() {
    let s = stack();
    let h = s.get("/health", None).await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.body["status"], "ok");
    assert_eq!(h.body["d1"], "ok");
    assert_eq!(h.body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let s = stack();
    let mut seen = std::collections::HashSet::new();
    for (method, path) in [("GET", "/health"), ("GET", "/nope"), ("DELETE", "/health"), ("GET", "/v1/me")] {
        let a = s.send(method, path, None, None).await;
        let id = a.header("x-request-id").unwrap_or_else(|| panic!("{method} {path} has no x-request-id"));
        assert!(id.starts_with("req_") && id.len() > 10, "{id}");
        assert!(seen.insert(id.to_string()), "request ids repeat");
    }
    // A caller's own plain id is kept so it can trace a request end to end.
    let r = s.http.get(s.url("/health")).header("x-request-id", "client-trace-0001").send().await.expect("sent");
    assert_eq!(r.headers()["x-request-id"], "client-trace-0001");
    // One that could inject into logs is replaced.
    let r = s.http.get(s.url("/health")).header("x-request-id", "bad id with spaces").send().await.expect("sent");
    assert_ne!(r.headers()["x-request-id"], "bad id with spaces");
}

#[tokio::test]
async fn unknown_route_is_404_json() {
    let s = stack();
    s.get("/definitely/not/here", None).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let s = stack();
    let a = s.send("PUT", "/v1/admin/jobs", None, None).await;
    a.assert_error(405, "method_not_allowed");
    assert_eq!(a.header("allow"), Some("GET, POST"));
}

#[tokio::test]
async fn oversized_body_is_413_and_creates_nothing() {
    let s = stack();
    let email = format!("big-{}@e2e.test", crate::common::unique());
    let padding = "x".repeat(5 * 1024 * 1024);
    let r = s
        .http
        .post(s.url("/v1/admin/accounts"))
        .bearer_auth(&s.operator_key)
        .json(&json!({"email": email, "password": "e2e-password-123", "name": padding}))
        .send()
        .await
        .expect("sent");
    answer(r).await.assert_error(413, "payload_too_large");
    // Nothing was written: the same email can still be used.
    let ok = s.post("/v1/admin/accounts", Some(&s.operator_key), json!({"email": email, "password": "e2e-password-123"})).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
}

#[tokio::test]
async fn bad_json_is_400_and_creates_nothing() {
    let s = stack();
    let r = s.http.post(s.url("/v1/admin/accounts")).bearer_auth(&s.operator_key).body("{\"email\": ").send().await.expect("sent");
    answer(r).await.assert_error(400, "invalid_json");
    let r = s.http.post(s.url("/v1/admin/accounts")).bearer_auth(&s.operator_key).send().await.expect("sent");
    answer(r).await.assert_error(400, "missing_body");
    let email = format!("shape-{}@e2e.test", crate::common::unique());
    let wrong = s.post("/v1/admin/accounts", Some(&s.operator_key), json!({"email": email, "password": 12})).await;
    wrong.assert_error(400, "invalid_request");
    let weak = s.post("/v1/admin/accounts", Some(&s.operator_key), json!({"email": email, "password": "short"})).await;
    weak.assert_error(400, "weak_password");
    let ok = s.post("/v1/admin/accounts", Some(&s.operator_key), json!({"email": email, "password": "e2e-password-123"})).await;
    assert_eq!(ok.status, 201, "nothing was written by the refused calls: {}", ok.text);
}

#[tokio::test]
async fn cors_preflight_follows_the_allow_list() {
    let s = stack();
    let ok = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/v1/me"))
        .header("origin", "https://dexto.ai")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status().as_u16(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://dexto.ai");
    assert!(ok.headers().get("access-control-allow-credentials").is_none(), "token auth only, no cookies");
    let bad = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/v1/me"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("sent");
    assert!(bad.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn openapi_documents_every_route_the_worker_serves() {
    let s = stack();
    let doc = s.get("/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    for route in ROUTES {
        let p = openapi_path(route.path);
        assert!(doc.body["paths"][&p][route.method.to_ascii_lowercase()].is_object(), "{} {p} missing from /openapi.json", route.method);
        // And the Worker really routes it: anything but "no route".
        let concrete = route.path.replace(":id", "x_missing");
        let a = s.send(route.method, &concrete, None, None).await;
        assert!(
            !(a.status == 404 && a.body["error"]["message"].as_str().is_some_and(|m| m.starts_with("No route"))),
            "{} {} is not routed",
            route.method,
            route.path
        );
    }
}

#[tokio::test]
async fn openapi_has_no_unrouted_paths() {
    let s = stack();
    let doc = s.get("/openapi.json", None).await;
    let paths = doc.body["paths"].as_object().cloned().unwrap_or_default();
    assert!(!paths.is_empty());
    for p in paths.keys() {
        assert!(ROUTES.iter().any(|r| &openapi_path(r.path) == p), "{p} documented but not routed");
    }
}
