use serde::{Deserialize, Serialize};
use worker::D1Database;

use super::{changes, int, opt_text, text};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCodeRow {
    pub id: String,
    pub user_code: String,
    pub status: String,
    pub key_name: String,
    pub approved_user_id: Option<String>,
    pub interval_secs: i64,
    pub expires_at: i64,
    pub last_polled_at: Option<i64>,
}

const COLUMNS: &str = "id, user_code, status, key_name, approved_user_id, interval_secs, expires_at, last_polled_at";

pub struct NewDeviceCode<'a> {
    pub id: &'a str,
    pub code_hash: &'a str,
    pub user_code: &'a str,
    pub key_name: &'a str,
    pub interval_secs: i64,
    pub now_ms: i64,
    pub expires_at: i64,
}

pub async fn insert(db: &D1Database, d: &NewDeviceCode<'_>) -> worker::Result<()> {
    db.prepare(
        "INSERT INTO device_codes (id, device_code_hash, user_code, key_name, interval_secs, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(&[text(d.id), text(d.code_hash), text(d.user_code), text(d.key_name), int(d.interval_secs), int(d.now_ms), int(d.expires_at)])?
    .run()
    .await
    .map(|_| ())
}

pub async fn by_code_hash(db: &D1Database, hash: &str) -> worker::Result<Option<DeviceCodeRow>> {
    db.prepare(format!("SELECT {COLUMNS} FROM device_codes WHERE device_code_hash = ?1"))
        .bind(&[text(hash)])?
        .first::<DeviceCodeRow>(None)
        .await
}

pub async fn by_user_code(db: &D1Database, user_code: &str) -> worker::Result<Option<DeviceCodeRow>> {
    db.prepare(format!("SELECT {COLUMNS} FROM device_codes WHERE user_code = ?1"))
        .bind(&[text(user_code)])?
        .first::<DeviceCodeRow>(None)
        .await
}

pub async fn polled(db: &D1Database, id: &str, now_ms: i64) -> worker::Result<()> {
    db.prepare("UPDATE device_codes SET last_polled_at = ?2 WHERE id = ?1").bind(&[text(id), int(now_ms)])?.run().await.map(|_| ())
}

/// pending → approved/denied, once.
pub async fn decide(db: &D1Database, id: &str, status: &str, user_id: Option<&str>, now_ms: i64) -> worker::Result<bool> {
    let r = db
        .prepare("UPDATE device_codes SET status = ?2, approved_user_id = ?3 WHERE id = ?1 AND status = 'pending' AND expires_at > ?4")
        .bind(&[text(id), text(status), opt_text(user_id), int(now_ms)])?
        .run()
        .await?;
    Ok(changes(&r) == 1)
}

/// approved → consumed, once; only the poll that wins mints the key.
pub async fn consume(db: &D1Database, id: &str, now_ms: i64) -> worker::Result<bool> {
    let r = db
        .prepare("UPDATE device_codes SET status = 'consumed', last_polled_at = ?2 WHERE id = ?1 AND status = 'approved'")
        .bind(&[text(id), int(now_ms)])?
        .run()
        .await?;
    Ok(changes(&r) == 1)
}

/// Which key the code delivered, for the audit trail.
pub async fn record_key(db: &D1Database, id: &str, key_id: &str) -> worker::Result<()> {
    db.prepare("UPDATE device_codes SET key_id = ?2 WHERE id = ?1").bind(&[text(id), text(key_id)])?.run().await.map(|_| ())
}

pub async fn delete_expired(db: &D1Database, before_ms: i64) -> worker::Result<u64> {
    let r = db.prepare("DELETE FROM device_codes WHERE expires_at < ?1").bind(&[int(before_ms)])?.run().await?;
    Ok(changes(&r))
}
