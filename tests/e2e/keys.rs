//! API keys on both route families, device-code sign-in, suspension and the
//! isolation matrix between accounts.

use serde_json::json;

use crate::common::stack;

#[tokio::test]
async fn dex_key_lifecycle_create_list_revoke_rotate() {
    let s = stack();
    let ses = s.register("keys").await;
    let (id, key) = s.create_key(&ses.token, "laptop").await;
    assert!(key.starts_with("pk_live_"));
    assert_eq!(s.get("/v1/me", Some(&key)).await.status, 200);

    let list = s.get("/v1/api-keys", Some(&ses.token)).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(!list.text.contains(&key), "a list never holds a full key");
    let entry = list.body["data"].as_array().and_then(|d| d.iter().find(|k| k["id"] == id.as_str()).cloned()).expect("listed");
    assert_eq!(entry["name"], "laptop");
    assert_eq!(entry["last4"].as_str(), Some(&key[key.len() - 4..]));

    // Rotate: the old key stops at once, the new one works.
    let rot = s.post(&format!("/v1/api-keys/{id}/rotate"), Some(&ses.token), json!({})).await;
    assert_eq!(rot.status, 200, "{}", rot.text);
    let new_key = rot.body["api_key"]["key"].as_str().unwrap_or_default().to_string();
    let new_id = rot.body["api_key"]["id"].as_str().unwrap_or_default().to_string();
    s.get("/v1/me", Some(&key)).await.assert_error(401, "invalid_api_key");
    assert_eq!(s.get("/v1/me", Some(&new_key)).await.status, 200);
    s.post(&format!("/v1/api-keys/{id}/rotate"), Some(&ses.token), json!({})).await.assert_error(409, "key_revoked");

    // Revoke.
    let del = s.send("DELETE", &format!("/v1/api-keys/{new_id}"), Some(&ses.token), None).await;
    assert_eq!(del.status, 200, "{}", del.text);
    s.get("/v1/me", Some(&new_key)).await.assert_error(401, "invalid_api_key");
    let v = s.get("/keys/validate", Some(&new_key)).await;
    assert_eq!((v.status, v.body["valid"].as_bool()), (200, Some(false)));
}

#[tokio::test]
async fn key_management_needs_a_session_not_a_key() {
    let s = stack();
    s.get("/v1/api-keys", Some(&s.demo_key)).await.assert_error(401, "invalid_api_key");
    s.post("/api/keys", Some(&s.demo_key), json!({"name": "x"})).await.assert_error(401, "invalid_api_key");
    s.get("/v1/api-keys", None).await.assert_error(401, "invalid_api_key");
    let ses = s.register("keys-bad").await;
    s.post("/v1/api-keys", Some(&ses.token), json!({"name": "x".repeat(101)})).await.assert_error(400, "invalid_name");
    s.post("/v1/api-keys", Some(&ses.token), json!({"name": 5})).await.assert_error(400, "invalid_request");
    s.send("DELETE", "/v1/api-keys/key_nope", Some(&ses.token), None).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn dexto_cli_routes_current_form() {
    let s = stack();
    let ses = s.register("dexto").await;
    // dexto login --token: list, delete "Dexto CLI Key"s, create one.
    let created = s.post("/api/keys", Some(&ses.token), json!({"name": "Dexto CLI Key"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["success"], true);
    let full = created.body["data"]["fullKey"].as_str().unwrap_or_default().to_string();
    let id = created.body["data"]["id"].as_str().unwrap_or_default().to_string();
    let list = s.get("/api/keys", Some(&ses.token)).await;
    assert_eq!(list.body["success"], true);
    let entry = list.body["data"].as_array().and_then(|d| d.iter().find(|k| k["id"] == id.as_str()).cloned()).expect("listed");
    assert_eq!(entry["isActive"], true);
    assert_eq!(entry["name"], "Dexto CLI Key");
    assert!(!list.text.contains(&full));
    let valid = s.get("/api/keys/validate", Some(&full)).await;
    assert_eq!((valid.status, valid.body["valid"].as_bool()), (200, Some(true)));
    let del = s.send("DELETE", &format!("/api/keys/{id}"), Some(&ses.token), None).await;
    assert_eq!(del.body["success"], true);
    let valid = s.get("/api/keys/validate", Some(&full)).await;
    assert_eq!(valid.body["valid"], false);
    let nokey = s.get("/api/keys/validate", None).await;
    assert_eq!((nokey.status, nokey.body["valid"].as_bool()), (200, Some(false)));
}

#[tokio::test]
async fn dexto_cli_routes_january_form_and_provision() {
    let s = stack();
    let ses = s.register("dexto-jan").await;
    let first = s.post("/keys/provision", Some(&ses.token), json!({"name": "Dexto CLI Key", "regenerate": false})).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["success"], true);
    assert_eq!(first.body["isNewKey"], true);
    let k1 = first.body["dextoApiKey"].as_str().unwrap_or_default().to_string();
    assert!(first.body["keyId"].is_string());
    assert_eq!(s.get("/keys/validate", Some(&k1)).await.body["valid"], true);
    // Provisioning the name again replaces its active key.
    let second = s.post("/api/provision", Some(&ses.token), json!({"name": "Dexto CLI Key", "regenerate": true})).await;
    let k2 = second.body["dextoApiKey"].as_str().unwrap_or_default().to_string();
    assert_ne!(k1, k2);
    assert_eq!(s.get("/keys/validate", Some(&k1)).await.body["valid"], false);
    assert_eq!(s.get("/keys/validate", Some(&k2)).await.body["valid"], true);
    // /keys/rotate with the key itself; /keys/list with a key.
    let rot = s.post("/keys/rotate", Some(&k2), json!({})).await;
    assert_eq!(rot.status, 200, "{}", rot.text);
    let k3 = rot.body["dextoApiKey"].as_str().unwrap_or_default().to_string();
    assert_eq!(s.get("/keys/validate", Some(&k2)).await.body["valid"], false);
    let list = s.get("/keys/list", Some(&k3)).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let active: Vec<_> = list.body["data"].as_array().map(|d| d.iter().filter(|k| k["isActive"] == true).collect()).unwrap_or_default();
    assert_eq!(active.len(), 1, "{}", list.text);
    assert!(!list.text.contains(&k3));
}

#[tokio::test]
async fn device_code_login_delivers_a_key_once() {
    let s = stack();
    let start = s.post("/api/auth/device/start", None, json!({"client": "dexto-cli"})).await;
    assert_eq!(start.status, 200, "{}", start.text);
    for f in ["deviceCode", "userCode", "verificationUri", "verificationUriComplete", "expiresIn", "interval"] {
        assert!(!start.body[f].is_null(), "{f} missing: {}", start.text);
    }
    let device = start.body["deviceCode"].as_str().unwrap_or_default().to_string();
    let user_code = start.body["userCode"].as_str().unwrap_or_default().to_string();
    let pending = s.post("/api/auth/device/poll", None, json!({"deviceCode": device})).await;
    assert_eq!((pending.status, pending.body["status"].as_str()), (200, Some("pending")), "{}", pending.text);
    // Polling faster than the interval: 429 (the CLI backs off on it).
    let fast = s.post("/api/auth/device/poll", None, json!({"deviceCode": device})).await;
    fast.assert_error(429, "slow_down");

    let ses = s.register("device").await;
    s.post("/api/auth/device/approve", Some(&s.demo_key), json!({"userCode": user_code})).await.assert_error(401, "invalid_api_key");
    let ok = s.post("/api/auth/device/approve", Some(&ses.token), json!({"userCode": user_code.to_lowercase()})).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let got = s.post("/api/auth/device/poll", None, json!({"deviceCode": device})).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body["status"], "approved");
    let key = got.body["fullKey"].as_str().unwrap_or_default().to_string();
    for f in ["id", "keyDisplay", "name", "scopes", "status"] {
        assert!(!got.body["apiKey"][f].is_null(), "apiKey.{f}");
    }
    let me = s.get("/v1/me", Some(&key)).await;
    assert_eq!(me.body["user"]["id"], ses.user_id.as_str(), "the key belongs to the approver");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    s.post("/api/auth/device/poll", None, json!({"deviceCode": device})).await.assert_error(410, "already_used");
}

#[tokio::test]
async fn device_code_denied_unknown_and_bad_input() {
    let s = stack();
    let ses = s.register("device-deny").await;
    let start = s.post("/api/auth/device/start", None, json!({})).await;
    let device = start.body["deviceCode"].as_str().unwrap_or_default().to_string();
    let user_code = start.body["userCode"].as_str().unwrap_or_default().to_string();
    let denied = s.post("/api/auth/device/deny", Some(&ses.token), json!({"userCode": user_code})).await;
    assert_eq!(denied.status, 200);
    s.post("/api/auth/device/poll", None, json!({"deviceCode": device})).await.assert_error(403, "access_denied");
    s.post("/api/auth/device/approve", Some(&ses.token), json!({"userCode": user_code})).await.assert_error(404, "not_found");
    s.post("/api/auth/device/poll", None, json!({"deviceCode": "dc_unknown"})).await.assert_error(404, "expired_token");
    s.post("/api/auth/device/poll", None, json!({})).await.assert_error(400, "invalid_request");
    s.post("/api/auth/device/approve", Some(&ses.token), json!({"userCode": "AAAA"})).await.assert_error(400, "invalid_user_code");
}

#[tokio::test]
async fn isolation_matrix_between_accounts() {
    let s = stack();
    let a = s.register("iso-a").await;
    let b = s.register("iso-b").await;
    let (b_key_id, b_key) = s.create_key(&b.token, "b-key").await;
    let b_path = format!("/v1/admin/accounts/{}", b.account_id);
    // Every account-scoped route, called by A on B's objects.
    let (_, a_key) = s.create_key(&a.token, "a-key").await;
    // Key routes take a session (a key there is 401 before any lookup);
    // account routes are tried with A's session and A's key.
    let session_only = [a.token.as_str()];
    let both = [a.token.as_str(), a_key.as_str()];
    let attempts = vec![
        ("DELETE", format!("/v1/api-keys/{b_key_id}"), None, &session_only[..]),
        ("POST", format!("/v1/api-keys/{b_key_id}/rotate"), Some(json!({})), &session_only[..]),
        ("DELETE", format!("/api/keys/{b_key_id}"), None, &session_only[..]),
        ("GET", b_path.clone(), None, &both[..]),
        ("POST", format!("{b_path}/credits"), Some(json!({"amount_usd": "1", "reason": "x", "idempotency_key": "iso"})), &both[..]),
        ("POST", format!("{b_path}/suspend"), Some(json!({})), &both[..]),
        ("POST", format!("{b_path}/reactivate"), Some(json!({})), &both[..]),
    ];
    for (method, path, body, creds) in &attempts {
        for cred in creds.iter().copied() {
            let r = s.send(method, path, Some(cred), body.clone()).await;
            assert!(r.status == 403 || r.status == 404, "{method} {path} gave {}: {}", r.status, r.text);
        }
    }
    // A's lists never show B's keys.
    let list = s.get("/v1/api-keys", Some(&a.token)).await;
    assert!(!list.text.contains(&b_key_id));
    let list = s.get("/api/keys", Some(&a.token)).await;
    assert!(!list.text.contains(&b_key_id));
    // Nothing changed for B.
    assert_eq!(s.get("/v1/me", Some(&b_key)).await.status, 200);
    let me = s.get("/v1/me", Some(&b.token)).await;
    assert_eq!(me.body["account"]["status"], "active");
}

#[tokio::test]
async fn suspension_stops_keys_and_sessions_until_reactivated() {
    let s = stack();
    let ses = s.register("suspend").await;
    let (_, key) = s.create_key(&ses.token, "k").await;
    assert_eq!(s.get("/v1/me", Some(&key)).await.status, 200); // cached now
    let sus =
        s.post(&format!("/v1/admin/accounts/{}/suspend", ses.account_id), Some(&s.operator_key), json!({"reason": "invoice unpaid"})).await;
    assert_eq!(sus.status, 200, "{}", sus.text);
    assert_eq!(sus.body["account"]["status"], "suspended");
    s.get("/v1/me", Some(&key)).await.assert_error(403, "account_suspended");
    let r = s.get("/v1/me", Some(&ses.token)).await;
    assert!(r.status == 401 || r.status == 403, "{}", r.text);
    s.post("/v1/auth/login", None, json!({"email": ses.email, "password": ses.password})).await.assert_error(403, "account_suspended");
    let re = s.post(&format!("/v1/admin/accounts/{}/reactivate", ses.account_id), Some(&s.operator_key), json!({})).await;
    assert_eq!(re.body["account"]["status"], "active");
    assert_eq!(s.get("/v1/me", Some(&key)).await.status, 200);
    s.post("/v1/admin/accounts/acct_missing/suspend", Some(&s.operator_key), json!({})).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn admin_lists_users_in_pages() {
    let s = stack();
    s.register("page").await;
    s.register("page").await;
    let p1 = s.get("/v1/admin/users?limit=2", Some(&s.operator_key)).await;
    assert_eq!(p1.status, 200, "{}", p1.text);
    assert_eq!(p1.body["data"].as_array().map(Vec::len), Some(2));
    let cursor = p1.body["next_cursor"].as_str().expect("more pages").to_string();
    let p2 = s.get(&format!("/v1/admin/users?limit=2&cursor={cursor}"), Some(&s.operator_key)).await;
    assert_eq!(p2.status, 200);
    let first_ids: Vec<_> = p1.body["data"].as_array().map(|d| d.iter().map(|u| u["id"].clone()).collect()).unwrap_or_default();
    assert!(p2.body["data"].as_array().is_some_and(|d| d.iter().all(|u| !first_ids.contains(&u["id"]))));
    assert!(!p1.text.contains("password"));
    s.get("/v1/admin/users?cursor=garbage", Some(&s.operator_key)).await.assert_error(400, "invalid_cursor");
    s.get("/v1/admin/users?limit=500", Some(&s.operator_key)).await.assert_error(400, "invalid_limit");
}
