//! Tests that read or write the local D1 database directly (through
//! `wrangler d1 execute`, another process on the same SQLite file). They run
//! after the main suite, one at a time (scripts/e2e.sh): a second writer on
//! the file while the Worker is busy makes the Worker's own queries fail
//! with SQLITE_BUSY, which would be a fault of the harness, not the product.

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
