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
    pub plan: String,
    pub account_status: String,
    pub role: String,
    pub is_operator: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySummary {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub last4: String,
    pub status: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
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
        "SELECT k.id AS key_id, k.name AS key_name, k.prefix AS key_prefix, k.account_id, k.user_id, \
                a.plan, a.status AS account_status, u.role, u.is_operator \
         FROM api_keys k JOIN users u ON u.id = k.user_id JOIN accounts a ON a.id = k.account_id \
         WHERE k.key_hash = ?1 AND k.status = 'active' AND u.status = 'active' \
           AND (k.expires_at IS NULL OR k.expires_at > ?2)",
    )
    .bind(&[text(key_hash), int(now_ms)])?
    .first::<KeyContext>(None)
    .await
}

pub async fn list_by_account(db: &D1Database, account_id: &str) -> worker::Result<Vec<KeySummary>> {
    db.prepare("SELECT id, name, prefix, last4, status, created_at, last_used_at FROM api_keys WHERE account_id = ?1 ORDER BY created_at")
        .bind(&[text(account_id)])?
        .all()
        .await?
        .results::<KeySummary>()
}
