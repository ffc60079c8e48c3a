//! Applying verified Stripe events (from the `stripe_event` job) and
//! reporting overage to Stripe Billing Meters (`sync_usage`). Each effect is
//! idempotent on its own: credits by Checkout Session id, subscription state
//! only when newer than what is stored, meter events by deterministic
//! identifier, so a redelivered or retried event changes nothing twice.

use dex_queues::{Job, JobError, Trigger};
use dex_shared::stripe::{
    checkout_session_view, invoice_view, meter_event_params, meter_identifier, should_apply, status_rank, subscription_view,
    SubscriptionPlan,
};
use serde_json::{json, Value};
use worker::{Env, Method};

use crate::config::Config;
use crate::durable;
use crate::handlers::accounts::apply_status;
use crate::logging::{self, now_ms};
use crate::providers::stripe::Stripe;
use crate::repositories::billing::{self as repo, SubscriptionRow};
use crate::repositories::{accounts, webhook_events};

fn retry<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> JobError {
    move |e| JobError::retryable(format!("{what}: {e}"))
}

async fn account_of(env: &Env, object: &Value, customer: Option<&str>) -> Result<Option<String>, JobError> {
    if let Some(a) = object["metadata"]["account_id"].as_str().or_else(|| object["client_reference_id"].as_str()) {
        return Ok(Some(a.to_string()));
    }
    let Some(c) = customer else { return Ok(None) };
    let db = env.d1("DB").map_err(retry("D1"))?;
    repo::account_for_customer(&db, c).await.map_err(retry("D1"))
}

async fn wallet(env: &Env, account_id: &str, path: &str, body: &Value) -> Result<Value, JobError> {
    let (status, answer) =
        durable::call::<Value>(env, "WALLET", account_id, Method::Post, path, Some(body)).await.map_err(retry("wallet"))?;
    if status != 200 {
        return Err(JobError::retryable(format!("wallet {path} answered {status}")));
    }
    Ok(answer)
}

fn plan_of(sub_plan: Option<&str>, lookup_key: Option<&str>) -> Option<SubscriptionPlan> {
    sub_plan.and_then(SubscriptionPlan::from_str).or_else(|| {
        let k = lookup_key?;
        ["basic", "pro", "ignition", "velocity", "dominance"]
            .iter()
            .filter_map(|p| SubscriptionPlan::from_str(p))
            .find(|p| p.lookup_key() == k)
    })
}

/// Applies one event; the result is stored as the job's result.
pub async fn apply(env: &Env, event: &Value) -> Result<Value, JobError> {
    let id = event["id"].as_str().unwrap_or_default().to_string();
    let kind = event["type"].as_str().unwrap_or_default().to_string();
    let created = event["created"].as_i64().unwrap_or(0);
    let object = &event["data"]["object"];
    let db = env.d1("DB").map_err(retry("D1"))?;
    let now = now_ms();
    let outcome = match kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            let s = checkout_session_view(object).ok_or_else(|| JobError::permanent("not a checkout session"))?;
            let account =
                account_of(env, object, s.customer.as_deref()).await?.ok_or_else(|| JobError::permanent("session names no account"))?;
            if s.mode == "payment" {
                if s.payment_status != "paid" {
                    json!({"action": "none", "reason": "not paid yet"})
                } else {
                    let priced = repo::transaction_amount(&db, &s.id).await.map_err(retry("D1"))?;
                    // What we priced when creating the session, not what the event says.
                    let micros =
                        priced.filter(|m| *m > 0).or_else(|| s.metadata.get("credit_micros").and_then(|m| m.parse().ok())).unwrap_or(0);
                    if micros <= 0 {
                        return Err(JobError::permanent("credit pack without an amount"));
                    }
                    let credit = json!({"amount_micros": micros, "reason": "credit pack", "idempotency_key": format!("checkout:{}", s.id), "now_ms": now});
                    let answer = wallet(env, &account, "/credit", &credit).await?;
                    repo::finish_transaction(&db, &s.id, "completed", now).await.map_err(retry("D1"))?;
                    json!({"action": "credited", "account_id": account, "amount_micros": micros, "applied": answer["applied"], "balance_micros": answer["balance_micros"]})
                }
            } else {
                let plan = plan_of(s.metadata.get("plan").map(String::as_str), None);
                if let Some(p) = plan {
                    repo::set_plan(&db, &account, p.as_str(), now).await.map_err(retry("D1"))?;
                }
                repo::finish_transaction(&db, &s.id, "completed", now).await.map_err(retry("D1"))?;
                json!({"action": "subscribed", "account_id": account, "plan": plan.map(|p| p.as_str())})
            }
        }
        "checkout.session.expired" => {
            let sid = object["id"].as_str().unwrap_or_default();
            let changed = repo::finish_transaction(&db, sid, "expired", now).await.map_err(retry("D1"))?;
            json!({"action": "expired", "session": sid, "changed": changed})
        }
        "customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted" => {
            let v = subscription_view(object).ok_or_else(|| JobError::permanent("not a subscription"))?;
            let account = account_of(env, object, Some(v.customer.as_str()))
                .await?
                .ok_or_else(|| JobError::permanent("subscription names no account"))?;
            let status = if kind == "customer.subscription.deleted" { "canceled".to_string() } else { v.status.clone() };
            let stored = repo::subscription(&db, &account).await.map_err(retry("D1"))?;
            if !should_apply(stored.as_ref().map(|s| s.last_event_created), stored.as_ref().map(|s| s.status_rank as u8), created, &status)
            {
                // Out of order: a newer state is already applied.
                return Ok(json!({"action": "skipped", "reason": "older than the stored state", "event": id}));
            }
            let plan = plan_of(v.metadata.get("plan").map(String::as_str), v.plan_lookup_key.as_deref())
                .or_else(|| stored.as_ref().and_then(|s| SubscriptionPlan::from_str(&s.plan)))
                .ok_or_else(|| JobError::permanent("subscription without a known plan"))?;
            let row = SubscriptionRow {
                account_id: account.clone(),
                stripe_subscription_id: v.id.clone(),
                plan: plan.as_str().to_string(),
                status: status.clone(),
                current_period_start: v.current_period_start,
                current_period_end: v.current_period_end,
                last_event_created: created,
                status_rank: status_rank(&status) as i64,
            };
            repo::upsert_subscription(&db, &row, now).await.map_err(retry("D1"))?;
            let live = matches!(status.as_str(), "active" | "trialing");
            let mut follow_up = None;
            if live {
                repo::set_plan(&db, &account, plan.as_str(), now).await.map_err(retry("D1"))?;
                if let (Some(start), Some(end)) = (v.current_period_start, v.current_period_end) {
                    wallet(env, &account, "/period", &json!({"start_ms": start * 1000, "end_ms": end * 1000, "now_ms": now})).await?;
                }
                let first_time = stored.as_ref().is_none_or(|s| !matches!(s.status.as_str(), "active" | "trialing"));
                if first_time {
                    follow_up = Some(if plan.is_persona_tier() {
                        Job::AllocatePersonas { account_id: account.clone(), tier: plan.as_str().to_string() }
                    } else {
                        Job::ProvisionIdentity { account_id: account.clone(), plan: plan.as_str().to_string() }
                    });
                }
            } else if matches!(status.as_str(), "canceled" | "unpaid" | "incomplete_expired") {
                repo::set_plan(&db, &account, "prepaid", now).await.map_err(retry("D1"))?;
                if !plan.is_persona_tier() {
                    follow_up = Some(Job::DeprovisionIdentity { account_id: account.clone() });
                }
            }
            let follow = follow_up.as_ref().map(|j| j.type_name());
            if let Some(job) = follow_up {
                crate::jobs::enqueue(env, job, Trigger::System).await.map_err(retry("queue"))?;
            }
            json!({"action": "subscription", "account_id": account, "plan": plan.as_str(), "status": status, "enqueued": follow})
        }
        "invoice.payment_failed" | "invoice.paid" => {
            let inv = invoice_view(object).ok_or_else(|| JobError::permanent("not an invoice"))?;
            let Some(account) = account_of(env, object, Some(inv.customer.as_str())).await? else {
                return Ok(json!({"action": "none", "reason": "unknown customer"}));
            };
            let acct = accounts::get(&db, &account).await.map_err(retry("D1"))?;
            if kind == "invoice.payment_failed" {
                apply_status(env, &account, "suspended", Some("payment_failed"), now).await.map_err(|e| JobError::retryable(e.message))?;
                json!({"action": "suspended", "account_id": account})
            } else {
                // Restore only what a failed payment suspended, not an operator's suspension.
                let restored =
                    acct.as_ref().is_some_and(|a| a.status == "suspended" && a.status_reason.as_deref() == Some("payment_failed"));
                if restored {
                    apply_status(env, &account, "active", None, now).await.map_err(|e| JobError::retryable(e.message))?;
                }
                // The lines carry the period being paid for (the invoice's own
                // period_start/end cover the previous one).
                if let (Some(start), Some(end)) = (inv.line_period_start, inv.line_period_end) {
                    if end > start && inv.subscription.is_some() {
                        wallet(env, &account, "/period", &json!({"start_ms": start * 1000, "end_ms": end * 1000, "now_ms": now})).await?;
                    }
                }
                json!({"action": "paid", "account_id": account, "reactivated": restored})
            }
        }
        _ => json!({"action": "ignored", "type": kind}),
    };
    let _ = webhook_events::mark_processed(&db, "stripe", &id, now).await;
    Ok(outcome)
}

/// Sends each metered account's overage not yet reported. The identifier of
/// a meter event is derived from (account, period, kind, cumulative total),
/// so a sync retried after a crash sends the same identifiers and Stripe
/// counts them once; `usage_sync` only moves after Stripe accepted.
pub async fn sync_usage(env: &Env) -> Result<Value, JobError> {
    let config = Config::new(env);
    let stripe = Stripe::from_config(&config).map_err(|e| JobError::permanent(e.message))?;
    let db = env.d1("DB").map_err(retry("D1"))?;
    let now = now_ms();
    let mut sent = 0u64;
    let mut accounts_seen = 0u64;
    for account in repo::metered_accounts(&db).await.map_err(retry("D1"))? {
        accounts_seen += 1;
        crate::meter::settle_account(env, &account.id).await;
        let (status, w) =
            durable::call::<Value>(env, "WALLET", &account.id, Method::Get, "/balance", None).await.map_err(retry("wallet"))?;
        if status != 200 {
            return Err(JobError::retryable(format!("wallet answered {status}")));
        }
        let period = w["period_start_ms"].as_i64().unwrap_or(0);
        for (kind, total) in
            [("input", w["overage_input_tokens"].as_u64().unwrap_or(0)), ("output", w["overage_output_tokens"].as_u64().unwrap_or(0))]
        {
            let reported = repo::reported_tokens(&db, &account.id, period, kind).await.map_err(retry("D1"))?;
            if total <= reported {
                continue;
            }
            let identifier = meter_identifier(&account.id, period, kind, total);
            let name =
                config.get(&format!("STRIPE_METER_{}", kind.to_ascii_uppercase())).unwrap_or_else(|| format!("dex_overage_{kind}_tokens"));
            let timestamp = now / 1000;
            let params = meter_event_params(&name, &account.stripe_customer_id, total - reported, &identifier, timestamp);
            // The meter's own `identifier` is what dedupes across retries; the
            // Idempotency-Key is per attempt, since a retry carries a new timestamp.
            match stripe.post("/v1/billing/meter_events", &params, &format!("{identifier}-{timestamp}")).await {
                Ok(_) => {}
                // Already recorded by Stripe (an earlier attempt got through).
                Err(f) if f.error.status == 400 && f.error.message.contains("identifier") => {}
                Err(f) if f.retryable => return Err(JobError::retryable(format!("Stripe: {}", f.error.message))),
                Err(f) => return Err(JobError::permanent(format!("Stripe: {}", f.error.message))),
            }
            repo::mark_reported(&db, &account.id, period, kind, total, now).await.map_err(retry("D1"))?;
            sent += 1;
            logging::emit(
                logging::info("usage_sync.sent")
                    .field("account_id", account.id.as_str())
                    .field("kind", kind)
                    .field("tokens", total - reported),
            );
        }
    }
    Ok(json!({"accounts": accounts_seen, "meter_events": sent}))
}
