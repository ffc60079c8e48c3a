use worker::D1Database;

use super::{changes, int};

/// Forgets event ids processed before the cutoff (long after any redelivery).
pub async fn delete_processed_before(db: &D1Database, before_ms: i64) -> worker::Result<u64> {
    let r = db
        .prepare("DELETE FROM webhook_events WHERE processed_at IS NOT NULL AND processed_at < ?1")
        .bind(&[int(before_ms)])?
        .run()
        .await?;
    Ok(changes(&r))
}

/// Records an event id; false when it was seen before (the delivery is a repeat).
pub async fn record(db: &D1Database, provider: &str, event_id: &str, event_type: &str, payload: &str, now_ms: i64) -> worker::Result<bool> {
    let r = db
        .prepare("INSERT OR IGNORE INTO webhook_events (provider, event_id, event_type, received_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)")
        .bind(&[super::text(provider), super::text(event_id), super::text(event_type), int(now_ms), super::text(payload)])?
        .run()
        .await?;
    Ok(changes(&r) == 1)
}

pub async fn mark_processed(db: &D1Database, provider: &str, event_id: &str, now_ms: i64) -> worker::Result<()> {
    db.prepare("UPDATE webhook_events SET processed_at = ?3 WHERE provider = ?1 AND event_id = ?2")
        .bind(&[super::text(provider), super::text(event_id), int(now_ms)])?
        .run()
        .await
        .map(|_| ())
}

pub async fn forget(db: &D1Database, provider: &str, event_id: &str) -> worker::Result<()> {
    db.prepare("DELETE FROM webhook_events WHERE provider = ?1 AND event_id = ?2")
        .bind(&[super::text(provider), super::text(event_id)])?
        .run()
        .await
        .map(|_| ())
}

pub async fn payload(db: &D1Database, provider: &str, event_id: &str) -> worker::Result<Option<String>> {
    db.prepare("SELECT payload FROM webhook_events WHERE provider = ?1 AND event_id = ?2")
        .bind(&[super::text(provider), super::text(event_id)])?
        .first::<Option<String>>(Some("payload"))
        .await
        .map(Option::flatten)
}
