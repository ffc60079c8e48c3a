use serde::{Deserialize, Serialize};
use worker::{D1Database, D1PreparedStatement};

use super::{int, opt_text, text};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub account_id: String,
    pub email: Option<String>,
    pub role: String,
    pub is_operator: i64,
    pub status: String,
    pub created_at: i64,
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub account_id: &'a str,
    pub email: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub role: &'a str,
    pub is_operator: bool,
    pub now_ms: i64,
}

const INSERT_VALUES: &str = "(id, account_id, email, password_hash, role, is_operator, created_at, updated_at)";

fn binds(u: &NewUser) -> Vec<wasm_bindgen::JsValue> {
    vec![
        text(u.id),
        text(u.account_id),
        opt_text(u.email),
        opt_text(u.password_hash),
        text(u.role),
        int(u.is_operator as i64),
        int(u.now_ms),
    ]
}

pub fn insert(db: &D1Database, u: &NewUser) -> worker::Result<D1PreparedStatement> {
    db.prepare(format!("INSERT INTO users {INSERT_VALUES} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)")).bind(&binds(u))
}

/// Inserts the user only while no operator exists: the bootstrap can succeed
/// once, even when two calls race (D1 runs a batch as one transaction).
pub fn insert_first_operator(db: &D1Database, u: &NewUser) -> worker::Result<D1PreparedStatement> {
    db.prepare(format!(
        "INSERT INTO users {INSERT_VALUES} SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7 WHERE NOT EXISTS (SELECT 1 FROM users WHERE is_operator = 1)"
    ))
    .bind(&binds(u))
}

pub async fn operator_exists(db: &D1Database) -> worker::Result<bool> {
    Ok(db.prepare("SELECT id FROM users WHERE is_operator = 1 LIMIT 1").first::<serde_json::Value>(None).await?.is_some())
}

pub async fn list_by_account(db: &D1Database, account_id: &str) -> worker::Result<Vec<UserRow>> {
    db.prepare("SELECT id, account_id, email, role, is_operator, status, created_at FROM users WHERE account_id = ?1 ORDER BY created_at")
        .bind(&[text(account_id)])?
        .all()
        .await?
        .results::<UserRow>()
}

pub async fn get(db: &D1Database, id: &str) -> worker::Result<Option<UserRow>> {
    db.prepare("SELECT id, account_id, email, role, is_operator, status, created_at FROM users WHERE id = ?1")
        .bind(&[text(id)])?
        .first::<UserRow>(None)
        .await
}
