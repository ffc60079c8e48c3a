use serde::{Deserialize, Serialize};
use worker::{D1Database, D1PreparedStatement};

use super::{changes, int, opt_text, text};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub plan: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewAccount<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub plan: &'a str,
    pub now_ms: i64,
}

pub fn insert(db: &D1Database, a: &NewAccount) -> worker::Result<D1PreparedStatement> {
    db.prepare("INSERT INTO accounts (id, name, kind, plan, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?5)")
        .bind(&[text(a.id), text(a.name), text(a.kind), text(a.plan), int(a.now_ms)])
}

pub fn delete(db: &D1Database, id: &str) -> worker::Result<D1PreparedStatement> {
    db.prepare("DELETE FROM accounts WHERE id = ?1").bind(&[text(id)])
}

pub async fn get(db: &D1Database, id: &str) -> worker::Result<Option<AccountRow>> {
    db.prepare("SELECT id, name, kind, plan, status, status_reason, created_at, updated_at FROM accounts WHERE id = ?1")
        .bind(&[text(id)])?
        .first::<AccountRow>(None)
        .await
}

/// Sets the status; false when the account does not exist.
pub async fn set_status(db: &D1Database, id: &str, status: &str, reason: Option<&str>, now_ms: i64) -> worker::Result<bool> {
    let r = db
        .prepare("UPDATE accounts SET status = ?2, status_reason = ?3, updated_at = ?4 WHERE id = ?1")
        .bind(&[text(id), text(status), opt_text(reason), int(now_ms)])?
        .run()
        .await?;
    Ok(changes(&r) == 1)
}

pub async fn ping(db: &D1Database) -> worker::Result<()> {
    db.prepare("SELECT 1 AS ok").first::<serde_json::Value>(None).await.map(|_| ())
}
