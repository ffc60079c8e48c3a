//! Stripe-side records: checkout transactions, subscriptions (applied in
//! event order), and the overage already reported to Stripe meters.

use serde::Deserialize;
use worker::D1Database;

use super::{changes, int, opt_text, text};

pub async fn stripe_customer(db: &D1Database, account_id: &str) -> worker::Result<Option<String>> {
    db.prepare("SELECT stripe_customer_id FROM accounts WHERE id = ?1")
        .bind(&[text(account_id)])?
        .first::<Option<String>>(Some("stripe_customer_id"))
        .await
        .map(Option::flatten)
}

pub async fn set_stripe_customer(db: &D1Database, account_id: &str, customer: &str, now_ms: i64) -> worker::Result<()> {
    db.prepare("UPDATE accounts SET stripe_customer_id = ?2, updated_at = ?3 WHERE id = ?1 AND stripe_customer_id IS NULL")
        .bind(&[text(account_id), text(customer), int(now_ms)])?
        .run()
        .await
        .map(|_| ())
}

pub async fn account_for_customer(db: &D1Database, customer: &str) -> worker::Result<Option<String>> {
    db.prepare("SELECT id FROM accounts WHERE stripe_customer_id = ?1").bind(&[text(customer)])?.first::<String>(Some("id")).await
}

pub async fn insert_transaction(
    db: &D1Database,
    id: &str,
    account_id: &str,
    kind: &str,
    amount_micros: i64,
    plan: Option<&str>,
    now_ms: i64,
) -> worker::Result<()> {
    db.prepare("INSERT OR IGNORE INTO stripe_transactions (id, account_id, kind, amount_micros, plan, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)")
        .bind(&[text(id), text(account_id), text(kind), int(amount_micros), opt_text(plan), int(now_ms)])?
        .run()
        .await
        .map(|_| ())
}

/// The amount a checkout was created for (what we priced, not what an event says).
pub async fn transaction_amount(db: &D1Database, id: &str) -> worker::Result<Option<i64>> {
    db.prepare("SELECT amount_micros FROM stripe_transactions WHERE id = ?1").bind(&[text(id)])?.first::<i64>(Some("amount_micros")).await
}

/// Moves a transaction out of `pending` once; false if it already left it.
pub async fn finish_transaction(db: &D1Database, id: &str, status: &str, now_ms: i64) -> worker::Result<bool> {
    let r = db
        .prepare("UPDATE stripe_transactions SET status = ?2, updated_at = ?3 WHERE id = ?1 AND status = 'pending'")
        .bind(&[text(id), text(status), int(now_ms)])?
        .run()
        .await?;
    Ok(changes(&r) == 1)
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct SubscriptionRow {
    pub account_id: String,
    pub stripe_subscription_id: String,
    pub plan: String,
    pub status: String,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub last_event_created: i64,
    pub status_rank: i64,
}

pub async fn subscription(db: &D1Database, account_id: &str) -> worker::Result<Option<SubscriptionRow>> {
    db.prepare(
        "SELECT account_id, stripe_subscription_id, plan, status, current_period_start, current_period_end, last_event_created, status_rank FROM subscriptions WHERE account_id = ?1",
    )
    .bind(&[text(account_id)])?
    .first::<SubscriptionRow>(None)
    .await
}

pub async fn upsert_subscription(db: &D1Database, s: &SubscriptionRow, now_ms: i64) -> worker::Result<()> {
    db.prepare(
        "INSERT INTO subscriptions (account_id, stripe_subscription_id, plan, status, current_period_start, current_period_end, last_event_created, status_rank, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(account_id) DO UPDATE SET stripe_subscription_id = excluded.stripe_subscription_id, \
         plan = excluded.plan, status = excluded.status, current_period_start = excluded.current_period_start, current_period_end = excluded.current_period_end, \
         last_event_created = excluded.last_event_created, status_rank = excluded.status_rank, updated_at = excluded.updated_at",
    )
    .bind(&[
        text(&s.account_id),
        text(&s.stripe_subscription_id),
        text(&s.plan),
        text(&s.status),
        s.current_period_start.map(int).unwrap_or(wasm_bindgen::JsValue::NULL),
        s.current_period_end.map(int).unwrap_or(wasm_bindgen::JsValue::NULL),
        int(s.last_event_created),
        int(s.status_rank),
        int(now_ms),
    ])?
    .run()
    .await
    .map(|_| ())
}

pub async fn set_plan(db: &D1Database, account_id: &str, plan: &str, now_ms: i64) -> worker::Result<()> {
    db.prepare("UPDATE accounts SET plan = ?2, updated_at = ?3 WHERE id = ?1")
        .bind(&[text(account_id), text(plan), int(now_ms)])?
        .run()
        .await
        .map(|_| ())
}

#[derive(Debug, Clone, Deserialize)]
pub struct MeteredAccount {
    pub id: String,
    pub stripe_customer_id: String,
}

/// Accounts on a metered plan with a Stripe customer.
pub async fn metered_accounts(db: &D1Database) -> worker::Result<Vec<MeteredAccount>> {
    db.prepare("SELECT id, stripe_customer_id FROM accounts WHERE plan IN ('basic', 'pro') AND stripe_customer_id IS NOT NULL ORDER BY id")
        .all()
        .await?
        .results::<MeteredAccount>()
}

pub async fn reported_tokens(db: &D1Database, account_id: &str, period_start: i64, kind: &str) -> worker::Result<u64> {
    Ok(db
        .prepare("SELECT reported_tokens FROM usage_sync WHERE account_id = ?1 AND period_start = ?2 AND kind = ?3")
        .bind(&[text(account_id), int(period_start), text(kind)])?
        .first::<i64>(Some("reported_tokens"))
        .await?
        .unwrap_or(0)
        .max(0) as u64)
}

/// Records what Stripe accepted; never moves backwards.
pub async fn mark_reported(
    db: &D1Database,
    account_id: &str,
    period_start: i64,
    kind: &str,
    total: u64,
    now_ms: i64,
) -> worker::Result<()> {
    db.prepare(
        "INSERT INTO usage_sync (account_id, period_start, kind, reported_tokens, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(account_id, period_start, kind) DO UPDATE SET reported_tokens = MAX(reported_tokens, excluded.reported_tokens), updated_at = excluded.updated_at",
    )
    .bind(&[text(account_id), int(period_start), text(kind), int(total as i64), int(now_ms)])?
    .run()
    .await
    .map(|_| ())
}
