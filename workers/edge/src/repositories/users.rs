use serde::{Deserialize, Serialize};
use worker::{D1Database, D1PreparedStatement};

use super::{int, opt_text, text};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub account_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: String,
    pub is_operator: i64,
    pub tenant_id: Option<String>,
    pub status: String,
    pub created_at: i64,
}

/// A user with the password hash, for sign-in only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserAuthRow {
    pub id: String,
    pub account_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password_hash: Option<String>,
    pub role: String,
    pub is_operator: i64,
    pub tenant_id: Option<String>,
    pub status: String,
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub account_id: &'a str,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub role: &'a str,
    pub is_operator: bool,
    pub tenant_id: Option<&'a str>,
    pub now_ms: i64,
}

const INSERT_VALUES: &str = "(id, account_id, email, phone, password_hash, role, is_operator, tenant_id, created_at, updated_at)";
const COLUMNS: &str = "id, account_id, email, phone, role, is_operator, tenant_id, status, created_at";
const AUTH_COLUMNS: &str = "id, account_id, email, phone, password_hash, role, is_operator, tenant_id, status";

fn binds(u: &NewUser) -> Vec<wasm_bindgen::JsValue> {
    vec![
        text(u.id),
        text(u.account_id),
        opt_text(u.email),
        opt_text(u.phone),
        opt_text(u.password_hash),
        text(u.role),
        int(u.is_operator as i64),
        opt_text(u.tenant_id),
        int(u.now_ms),
    ]
}

pub fn insert(db: &D1Database, u: &NewUser) -> worker::Result<D1PreparedStatement> {
    db.prepare(format!("INSERT INTO users {INSERT_VALUES} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)")).bind(&binds(u))
}

/// Inserts the user only while no operator exists: the bootstrap can succeed
/// once, even when two calls race (D1 runs a batch as one transaction).
pub fn insert_first_operator(db: &D1Database, u: &NewUser) -> worker::Result<D1PreparedStatement> {
    db.prepare(format!(
        "INSERT INTO users {INSERT_VALUES} SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9 WHERE NOT EXISTS (SELECT 1 FROM users WHERE is_operator = 1)"
    ))
    .bind(&binds(u))
}

pub async fn operator_exists(db: &D1Database) -> worker::Result<bool> {
    Ok(db.prepare("SELECT id FROM users WHERE is_operator = 1 LIMIT 1").first::<serde_json::Value>(None).await?.is_some())
}

pub async fn list_by_account(db: &D1Database, account_id: &str) -> worker::Result<Vec<UserRow>> {
    db.prepare(format!("SELECT {COLUMNS} FROM users WHERE account_id = ?1 ORDER BY created_at"))
        .bind(&[text(account_id)])?
        .all()
        .await?
        .results::<UserRow>()
}

pub async fn get(db: &D1Database, id: &str) -> worker::Result<Option<UserRow>> {
    db.prepare(format!("SELECT {COLUMNS} FROM users WHERE id = ?1")).bind(&[text(id)])?.first::<UserRow>(None).await
}

pub async fn auth_by_email(db: &D1Database, email: &str) -> worker::Result<Option<UserAuthRow>> {
    db.prepare(format!("SELECT {AUTH_COLUMNS} FROM users WHERE email = ?1")).bind(&[text(email)])?.first::<UserAuthRow>(None).await
}

pub async fn auth_by_phone(db: &D1Database, phone: &str) -> worker::Result<Option<UserAuthRow>> {
    db.prepare(format!("SELECT {AUTH_COLUMNS} FROM users WHERE phone = ?1")).bind(&[text(phone)])?.first::<UserAuthRow>(None).await
}

pub async fn auth_by_id(db: &D1Database, id: &str) -> worker::Result<Option<UserAuthRow>> {
    db.prepare(format!("SELECT {AUTH_COLUMNS} FROM users WHERE id = ?1")).bind(&[text(id)])?.first::<UserAuthRow>(None).await
}

/// Keyset pagination by (created_at, id): stable under concurrent sign-ups.
pub async fn page(db: &D1Database, after: Option<(i64, String)>, limit: u32) -> worker::Result<Vec<UserRow>> {
    let (t, id) = after.unwrap_or((-1, String::new()));
    db.prepare(format!("SELECT {COLUMNS} FROM users WHERE (created_at, id) > (?1, ?2) ORDER BY created_at, id LIMIT ?3"))
        .bind(&[int(t), text(&id), int(limit as i64)])?
        .all()
        .await?
        .results::<UserRow>()
}
