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
