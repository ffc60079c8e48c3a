use serde::{Deserialize, Serialize};
use worker::{D1Database, D1PreparedStatement};

use super::{int, text};

/// What a request authenticated by key may act as; cached in KV by key hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyContext {
    pub key_id: String,
    pub key_name: String,
    pub key_prefix: String,
    pub account_id: String,
    pub user_id: String,
    pub tenant_id: Option<String>,
    pub plan: String,
    pub account_status: String,
    pub role: String,
    pub is_operator: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySummary {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub last4: String,
    pub status: String,
    pub scopes: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub struct NewKey<'a> {
    pub id: &'a str,
    pub account_id: &'a str,
    pub user_id: &'a str,
    pub key_hash: &'a str,
    pub prefix: &'a str,
    pub last4: &'a str,
    pub name: &'a str,
    pub now_ms: i64,
}

/// Inserts the key only if its user exists (pairs with conditional user inserts).
pub fn insert(db: &D1Database, k: &NewKey) -> worker::Result<D1PreparedStatement> {
    db.prepare(
        "INSERT INTO api_keys (id, account_id, user_id, key_hash, prefix, last4, name, status, created_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?3)",
    )
    .bind(&[
        text(k.id),
        text(k.account_id),
        text(k.user_id),
        text(k.key_hash),
        text(k.prefix),
        text(k.last4),
        text(k.name),
        int(k.now_ms),
    ])
}

pub async fn context_by_hash(db: &D1Database, key_hash: &str, now_ms: i64) -> worker::Result<Option<KeyContext>> {
    db.prepare(
        "SELECT k.id AS key_id, k.name AS key_name, k.prefix AS key_prefix, k.account_id, k.user_id, u.tenant_id, \
                a.plan, a.status AS account_status, u.role, u.is_operator, k.last_used_at \
         FROM api_keys k JOIN users u ON u.id = k.user_id JOIN accounts a ON a.id = k.account_id \
         WHERE k.key_hash = ?1 AND k.status = 'active' AND u.status = 'active' \
           AND (k.expires_at IS NULL OR k.expires_at > ?2)",
    )
    .bind(&[text(key_hash), int(now_ms)])?
    .first::<KeyContext>(None)
    .await
}

/// Coalesced `last_used_at`: written only when the stored value is stale.
pub async fn touch(db: &D1Database, key_id: &str, now_ms: i64, every_ms: i64) -> worker::Result<()> {
    db.prepare("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - ?3)")
        .bind(&[text(key_id), int(now_ms), int(every_ms)])?
        .run()
        .await
        .map(|_| ())
}

const SUMMARY: &str = "id, user_id, name, prefix, last4, status, scopes, created_at, last_used_at, revoked_at";

pub async fn list_by_account(db: &D1Database, account_id: &str) -> worker::Result<Vec<KeySummary>> {
    db.prepare(format!("SELECT {SUMMARY} FROM api_keys WHERE account_id = ?1 ORDER BY created_at, id"))
        .bind(&[text(account_id)])?
        .all()
        .await?
        .results::<KeySummary>()
}

/// A key of this account (tenant isolation lives in the WHERE clause).
pub async fn get_in_account(db: &D1Database, account_id: &str, key_id: &str) -> worker::Result<Option<KeySummary>> {
    db.prepare(format!("SELECT {SUMMARY} FROM api_keys WHERE id = ?1 AND account_id = ?2"))
        .bind(&[text(key_id), text(account_id)])?
        .first::<KeySummary>(None)
        .await
}

/// Active keys of the account with this name.
pub async fn active_named(db: &D1Database, account_id: &str, name: &str) -> worker::Result<Vec<KeySummary>> {
    db.prepare(format!("SELECT {SUMMARY} FROM api_keys WHERE account_id = ?1 AND name = ?2 AND status = 'active' ORDER BY created_at"))
        .bind(&[text(account_id), text(name)])?
        .all()
        .await?
        .results::<KeySummary>()
}

/// Revokes keys and returns their hashes (for cache eviction).
pub fn revoke_stmt(db: &D1Database, account_id: &str, key_id: &str, now_ms: i64) -> worker::Result<D1PreparedStatement> {
    db.prepare("UPDATE api_keys SET status = 'revoked', revoked_at = ?3 WHERE id = ?1 AND account_id = ?2 AND status = 'active'").bind(&[
        text(key_id),
        text(account_id),
        int(now_ms),
    ])
}

pub async fn hashes(db: &D1Database, key_ids: &[String]) -> worker::Result<Vec<String>> {
    let mut out = Vec::new();
    for id in key_ids {
        if let Some(h) =
            db.prepare("SELECT key_hash FROM api_keys WHERE id = ?1").bind(&[text(id)])?.first::<String>(Some("key_hash")).await?
        {
            out.push(h);
        }
    }
    Ok(out)
}

pub async fn account_hashes(db: &D1Database, account_id: &str) -> worker::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Row {
        key_hash: String,
    }
    let rows =
        db.prepare("SELECT key_hash FROM api_keys WHERE account_id = ?1").bind(&[text(account_id)])?.all().await?.results::<Row>()?;
    Ok(rows.into_iter().map(|r| r.key_hash).collect())
}
