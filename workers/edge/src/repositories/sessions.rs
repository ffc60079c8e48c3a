use worker::D1Database;

use super::{changes, int};

/// Deletes refresh sessions that expired (or were revoked) before the cutoff.
pub async fn delete_expired(db: &D1Database, before_ms: i64) -> worker::Result<u64> {
    let r = db
        .prepare("DELETE FROM sessions WHERE expires_at < ?1 OR (revoked_at IS NOT NULL AND revoked_at < ?1)")
        .bind(&[int(before_ms)])?
        .run()
        .await?;
    Ok(changes(&r))
}
