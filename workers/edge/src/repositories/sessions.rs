use serde::{Deserialize, Serialize};
use worker::D1Database;

use super::{changes, int, text};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub family_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub family_id: &'a str,
    pub token_hash: &'a str,
    pub now_ms: i64,
    pub expires_at: i64,
}

pub async fn insert(db: &D1Database, s: &NewSession<'_>) -> worker::Result<()> {
    db.prepare("INSERT INTO sessions (id, user_id, family_id, refresh_token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .bind(&[text(s.id), text(s.user_id), text(s.family_id), text(s.token_hash), int(s.now_ms), int(s.expires_at)])?
        .run()
        .await
        .map(|_| ())
}

pub async fn by_token_hash(db: &D1Database, hash: &str) -> worker::Result<Option<SessionRow>> {
    db.prepare("SELECT id, user_id, family_id, expires_at, used_at, revoked_at FROM sessions WHERE refresh_token_hash = ?1")
        .bind(&[text(hash)])?
        .first::<SessionRow>(None)
        .await
}

/// Marks a refresh token used. False when another request used it first:
/// two refreshes racing with one token is reuse, and is treated as such.
pub async fn mark_used(db: &D1Database, id: &str, now_ms: i64) -> worker::Result<bool> {
    let r = db
        .prepare("UPDATE sessions SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL")
        .bind(&[text(id), int(now_ms)])?
        .run()
        .await?;
    Ok(changes(&r) == 1)
}

pub async fn revoke_family(db: &D1Database, family_id: &str, now_ms: i64) -> worker::Result<u64> {
    let r = db
        .prepare("UPDATE sessions SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL")
        .bind(&[text(family_id), int(now_ms)])?
        .run()
        .await?;
    Ok(changes(&r))
}

/// Live session families of the account's users (to end them on suspension).
pub async fn live_families_of_account(db: &D1Database, account_id: &str, now_ms: i64) -> worker::Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Row {
        family_id: String,
    }
    let rows = db
        .prepare(
            "SELECT DISTINCT s.family_id FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.account_id = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2",
        )
        .bind(&[text(account_id), int(now_ms)])?
        .all()
        .await?
        .results::<Row>()?;
    Ok(rows.into_iter().map(|r| r.family_id).collect())
}

/// Deletes refresh sessions that expired (or were revoked) before the cutoff.
pub async fn delete_expired(db: &D1Database, before_ms: i64) -> worker::Result<u64> {
    let r = db
        .prepare("DELETE FROM sessions WHERE expires_at < ?1 OR (revoked_at IS NOT NULL AND revoked_at < ?1)")
        .bind(&[int(before_ms)])?
        .run()
        .await?;
    Ok(changes(&r))
}
