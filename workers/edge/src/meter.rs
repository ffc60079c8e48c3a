//! What one isolate keeps between requests so that a proxied request costs
//! no round trip to a Durable Object, KV or D1 in the common case:
//!
//! - **wallet leases** (`dex_shared::lease`): each account's `WALLET` grants
//!   this isolate a hold it spends locally; renewed when it runs short, and
//!   by the flusher, which reports what was spent and shrinks the lease back
//!   to what is in flight once the isolate goes idle;
//! - **limit batches**: a key's request and token buckets, and the shards of
//!   the service-wide ceiling, are taken from their `LIMITER` objects in
//!   batches (`dex_shared::ratelimit::lease_size`), so small limits stay exact;
//! - **the usage buffer**: ledger rows are written to D1 in one batch per
//!   flush instead of one write per request.
//!
//! One renewal per object is in flight at a time (others wait for it), and
//! new reservations on an account wait while its lease is being renewed, so
//! the lease never promises what the object has not granted. The flusher
//! runs `FLUSH_EVERY_MS` after activity, inside `wait_until` of a request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use dex_shared::error::ApiError;
use dex_shared::lease::{self, Grant, LeaseAmounts, LocalLease, Shortfall, Spent};
use dex_shared::ratelimit::{lease_size, BucketRule, Decision, LEASE_LIFETIME_MS};
use dex_shared::wallet::{Actual, Estimate, Refusal};
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Env, Method};

use crate::durable;
use crate::logging::{self, now_ms};
use crate::proxy::billing::{self, Reservation};
use crate::repositories::usage::{self as usage_repo, UsageRecord};

/// How long after activity the flusher reports spending and writes usage.
const FLUSH_EVERY_MS: u64 = 250;
/// A lease not used for this long is shrunk to what is in flight.
const IDLE_AFTER_MS: i64 = 1_000;
/// One flusher keeps going at most this long; the next request starts another.
const FLUSHER_SPAN_MS: i64 = 20_000;
/// Rows that failed to be written are tried this many more times.
const LEDGER_RETRIES: u8 = 2;

/// A renewal or a refill in flight is given up on after this long (its
/// request was cancelled, say); the next caller sends its own.
const IN_FLIGHT_MAX_MS: i64 = 5_000;

struct AccountLease {
    /// This lease's id at the object: new for each lease this isolate
    /// opens, since the object remembers what it applied per id.
    id: String,
    account_id: String,
    plan: String,
    included_tokens: Option<u64>,
    lease: LocalLease,
    /// What the object has acknowledged of `lease.spent`.
    applied: Spent,
    /// Since when a renewal has been in flight.
    renewing: Option<i64>,
    last_used_ms: i64,
    last_estimate: Option<Estimate>,
    /// What a renewal's own request got, until that request reads it.
    outcomes: HashMap<String, Result<(), Shortfall>>,
}

#[derive(Default)]
struct Batch {
    left: u32,
    expires_ms: i64,
    /// The object's last word on the bucket, for the `x-ratelimit-*` headers.
    decision: Option<Decision>,
}

#[derive(Default)]
struct LimitObject {
    batches: HashMap<&'static str, Batch>,
    /// Since when a refill has been in flight.
    refreshing: Option<i64>,
}

#[derive(Default)]
struct Meter {
    isolate: String,
    wallets: HashMap<String, AccountLease>,
    limits: HashMap<String, LimitObject>,
    ledger: Vec<(UsageRecord, u8)>,
    flusher_until_ms: i64,
    next_shard: u32,
    leases_opened: u64,
}

thread_local! {
    static METER: RefCell<Meter> = RefCell::new(Meter::default());
}

fn with<R>(f: impl FnOnce(&mut Meter) -> R) -> R {
    METER.with(|m| f(&mut m.borrow_mut()))
}

/// Waits while another request's renewal or refill is in flight, by
/// polling on a timer of this request's own: a request must never be woken
/// by another request's I/O (the runtime would run it in the other
/// request's context and cancel it as hung).
async fn wait_while(in_flight: impl Fn(&mut Meter) -> Option<&mut Option<i64>>) {
    loop {
        let busy = with(|m| match in_flight(m) {
            Some(slot) => live(slot, now_ms()),
            None => false,
        });
        if !busy {
            return;
        }
        worker::Delay::from(Duration::from_millis(1)).await;
    }
}

/// Whether work is in flight; work in flight too long is given up on.
fn live(slot: &mut Option<i64>, now: i64) -> bool {
    match *slot {
        Some(since) if now - since > IN_FLIGHT_MAX_MS => {
            *slot = None;
            false
        }
        Some(_) => true,
        None => false,
    }
}

fn wallet_key(account_id: &str, plan: &str) -> String {
    format!("{account_id}/{plan}")
}

// ------------------------------------------------------------------ wallet

/// What settling a leased request charged, and the balance after it.
#[derive(Debug, Clone)]
pub struct LeasedCharge {
    pub charged_micros: i64,
    pub balance_micros: i64,
}

/// Reserves a request's worst case locally, renewing the lease when it is
/// short. Errors are the 402s the object would give, or 503 when the
/// object cannot be reached (nothing is charged).
pub async fn reserve(
    env: &Env,
    account_id: &str,
    plan: &str,
    est: &Estimate,
    request_id: &str,
    hold_ttl_ms: i64,
) -> Result<Reservation, ApiError> {
    let key = wallet_key(account_id, plan);
    let included_tokens = billing::included_tokens(env);
    // Headers of a whole answer carry the balance after settling, not this.
    let leased = Reservation {
        request_id: request_id.into(),
        account_id: account_id.into(),
        plan: plan.into(),
        included_tokens,
        available_after_micros: 0,
    };
    loop {
        // Never reserve against a lease whose renewal is in flight.
        wait_while(|m| m.wallets.get_mut(&key).map(|w| &mut w.renewing)).await;
        let outcome = with(|m| {
            if !m.wallets.contains_key(&key) {
                if m.isolate.is_empty() {
                    m.isolate = crate::ids::new_id("iso");
                }
                m.leases_opened += 1;
            }
            let id = format!("{}{}:{}:{plan}", lease::LEASE_PREFIX, m.isolate, m.leases_opened);
            let w = m.wallets.entry(key.clone()).or_insert_with(|| AccountLease {
                id,
                account_id: account_id.to_string(),
                plan: plan.to_string(),
                included_tokens,
                lease: LocalLease::new(crate::durable::wallet::terms_for(plan, included_tokens)),
                applied: Spent::default(),
                renewing: None,
                last_used_ms: 0,
                last_estimate: None,
                outcomes: HashMap::new(),
            });
            w.last_used_ms = now_ms();
            w.last_estimate = Some(*est);
            // A renewal started between the wait and here: wait again.
            if w.renewing.is_some() {
                return None;
            }
            Some(w.lease.reserve(est, request_id, now_ms(), hold_ttl_ms, false))
        });
        match outcome {
            None => continue,
            Some(Ok(_)) => return Ok(leased),
            Some(Err(Shortfall::Refused(r))) => return Err(refusal(r)),
            Some(Err(Shortfall::Renew)) => {}
        }
        // This request's own renewal reserves for it before anyone else
        // sees the new lease, and its answer stands.
        renew(env, &key, Some(*est), Some(Reserving { request_id: request_id.to_string(), est: *est, hold_ttl_ms })).await?;
        let mine = with(|m| m.wallets.get_mut(&key).and_then(|w| w.outcomes.remove(request_id)));
        return match mine {
            Some(Ok(())) => Ok(leased),
            Some(Err(Shortfall::Refused(r))) => Err(refusal(r)),
            _ => Err(billing::unavailable()),
        };
    }
}

/// The request a renewal is for: reserved as soon as the grant arrives.
struct Reserving {
    request_id: String,
    est: Estimate,
    hold_ttl_ms: i64,
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::SpendingCap { cap_micros, .. } => billing::spending_cap(cap_micros),
        Refusal::InsufficientCredits { balance_micros, .. } => billing::insufficient(balance_micros),
    }
}

/// Settles a leased request locally; the object hears of it at the next
/// flush. `None` if the hold is unknown here (already settled).
pub fn settle(env: &Env, worker_ctx: &worker::Context, l: &Reservation, actual: &Actual) -> Option<LeasedCharge> {
    let key = wallet_key(&l.account_id, &l.plan);
    let out = with(|m| {
        let w = m.wallets.get_mut(&key)?;
        let charge = w.lease.settle(&l.request_id, actual)?;
        let charged = charge.prepaid_micros + charge.overage_micros;
        Some(LeasedCharge { charged_micros: charged, balance_micros: w.lease.balance_micros() })
    });
    schedule_flush(env, worker_ctx);
    out
}

/// Nothing was served: the request's hold goes back to the lease.
pub fn release(l: &Reservation) {
    let key = wallet_key(&l.account_id, &l.plan);
    with(|m| {
        if let Some(w) = m.wallets.get_mut(&key) {
            w.lease.release(&l.request_id);
        }
    });
}

#[derive(Deserialize)]
struct LeaseAnswer {
    grant: Grant,
}

/// Reports what was spent and asks for what is needed: `est` requests'
/// headroom when busy, only what is in flight when `est` is `None`. One
/// renewal per account lease at a time; a second caller waits for the first
/// and then sends its own.
async fn renew(env: &Env, key: &str, est: Option<Estimate>, reserving: Option<Reserving>) -> Result<(), ApiError> {
    loop {
        wait_while(|m| m.wallets.get_mut(key).map(|w| &mut w.renewing)).await;
        let call = with(|m| {
            let w = m.wallets.get_mut(key)?;
            if live(&mut w.renewing, now_ms()) {
                return Some(None);
            }
            w.renewing = Some(now_ms());
            let reported = w.lease.spent;
            let want = w.lease.want(est.as_ref(), lease::HEADROOM_REQUESTS);
            let call = json!({
                "lease_id": w.id, "plan": w.plan, "spent": reported, "want": want,
                "now_ms": now_ms(), "included_tokens": w.included_tokens,
            });
            Some(Some((w.account_id.clone(), call, reported)))
        });
        match call {
            None => return Ok(()),
            Some(None) => continue,
            Some(Some((account_id, call, reported))) => return send_renewal(env, key, &account_id, call, reported, reserving).await,
        }
    }
}

async fn send_renewal(
    env: &Env,
    key: &str,
    account_id: &str,
    call: Value,
    reported: Spent,
    reserving: Option<Reserving>,
) -> Result<(), ApiError> {
    let answer = durable::call::<Value>(env, "WALLET", account_id, Method::Post, "/lease", Some(&call)).await;
    let grant = match answer {
        Ok((200, body)) => serde_json::from_value::<LeaseAnswer>(body).map(|a| a.grant).map_err(|e| e.to_string()),
        Ok((status, _)) => Err(format!("wallet answered {status}")),
        Err(e) => Err(e.to_string()),
    };
    let result = with(|m| {
        let Some(w) = m.wallets.get_mut(key) else {
            return grant;
        };
        w.renewing = None;
        let g = grant?;
        // An answer older than the grant in hand (a renewal given up on
        // that answered late) is not applied twice over a newer one.
        if g.expires_ms < w.lease.grant.expires_ms {
            return Ok(g);
        }
        w.lease.granted(g, reported);
        w.applied = w.applied.max(&reported);
        if let Some(r) = reserving {
            let outcome = w.lease.reserve(&r.est, &r.request_id, now_ms(), r.hold_ttl_ms, true).map(|_| ());
            w.outcomes.insert(r.request_id, outcome);
        }
        Ok(g)
    });
    match result {
        Ok(g) => {
            if g.low_balance_crossed {
                let job = dex_queues::Job::LowBalance { account_id: account_id.to_string(), balance_micros: g.balance_micros };
                if let Err(e) = crate::jobs::enqueue(env, job, dex_queues::Trigger::System).await {
                    logging::emit(logging::error("wallet.low_balance_enqueue_failed").field("detail", e.to_string()));
                }
            }
            Ok(())
        }
        Err(e) => {
            logging::emit(logging::error("wallet.lease_renewal_failed").field("detail", e));
            Err(billing::unavailable())
        }
    }
}

/// Reports everything this isolate spent for an account and gives back what
/// its leases hold beyond requests in flight; then writes the usage buffer.
/// Balance reads call this so that they see this isolate's spending.
pub async fn settle_account(env: &Env, account_id: &str) {
    let keys: Vec<String> = with(|m| {
        m.wallets.iter().filter(|(_, w)| w.account_id == account_id && !w.lease.is_settled(&w.applied)).map(|(k, _)| k.clone()).collect()
    });
    for key in keys {
        let _ = renew(env, &key, None, None).await;
    }
    write_usage(env).await;
}

// ------------------------------------------------------------------ limits

/// One bucket of a `LIMITER` object and what to take from it.
pub struct Take {
    pub bucket: &'static str,
    pub rule: BucketRule,
    pub cost: u32,
}

#[derive(Debug, Deserialize)]
struct Granted {
    granted: u32,
    decision: Decision,
}

/// Takes `cost` from each bucket of `object`, from this isolate's batches
/// when they hold enough, else from the object (a new batch, of which this
/// request's share is taken first). All or none. Answers each bucket's
/// decision (a refusal's is the object's).
pub async fn take(env: &Env, object: &str, takes: &[Take]) -> Result<Vec<Decision>, ApiError> {
    loop {
        wait_while(|m| m.limits.get_mut(object).map(|o| &mut o.refreshing)).await;
        let now = now_ms();
        let local = with(|m| {
            let o = m.limits.entry(object.to_string()).or_default();
            if live(&mut o.refreshing, now) {
                return Err(true);
            }
            let enough = takes.iter().all(|t| {
                t.cost == 0 || o.batches.get(t.bucket).is_some_and(|b| b.expires_ms > now && b.left >= t.cost && b.decision.is_some())
            });
            if !enough {
                return Err(false);
            }
            Ok(takes.iter().map(|t| take_local(o, t)).collect::<Vec<_>>())
        });
        match local {
            Ok(d) => return Ok(d),
            Err(true) => continue,
            Err(false) => return refill(env, object, takes).await,
        }
    }
}

fn take_local(o: &mut LimitObject, t: &Take) -> Decision {
    let b = o.batches.entry(t.bucket).or_default();
    b.left -= t.cost.min(b.left);
    let mut d = b.decision.unwrap_or_default();
    d.allowed = true;
    d.remaining = d.remaining.saturating_add(b.left);
    d
}

/// Fetches new batches and takes this request's share from them.
async fn refill(env: &Env, object: &str, takes: &[Take]) -> Result<Vec<Decision>, ApiError> {
    let now = now_ms();
    let body = json!({"takes": takes.iter().map(|t| {
        let size = lease_size(t.rule).max(t.cost);
        json!({"bucket": t.bucket, "rule": t.rule, "min": t.cost, "want": size, "now_ms": now})
    }).collect::<Vec<_>>()});
    with(|m| m.limits.entry(object.to_string()).or_default().refreshing = Some(now));
    let answer = durable::call::<Vec<Granted>>(env, "LIMITER", object, Method::Post, "/lease", Some(&body)).await;
    with(|m| {
        if let Some(o) = m.limits.get_mut(object) {
            o.refreshing = None;
        }
    });
    let granted = match answer {
        Ok((200, g)) => g,
        Ok((status, _)) => return Err(unreachable_limiter(format!("limiter answered {status}"))),
        Err(e) => return Err(unreachable_limiter(e.to_string())),
    };
    if granted.len() != takes.len() {
        return Err(ApiError::internal());
    }
    if granted.iter().any(|g| !g.decision.allowed) {
        return Ok(granted.into_iter().map(|g| g.decision).collect());
    }
    Ok(with(|m| {
        let o = m.limits.entry(object.to_string()).or_default();
        takes
            .iter()
            .zip(granted)
            .map(|(t, g)| {
                let b = o.batches.entry(t.bucket).or_default();
                if b.expires_ms <= now {
                    b.left = 0;
                }
                b.left = b.left.saturating_add(g.granted);
                b.expires_ms = now + LEASE_LIFETIME_MS;
                b.decision = Some(g.decision);
                take_local(o, t)
            })
            .collect()
    }))
}

fn unreachable_limiter(detail: String) -> ApiError {
    logging::emit(logging::error("limits.unreachable").field("detail", detail));
    ApiError::internal()
}

/// Tokens taken for more than was used go back to this isolate's batch
/// while it lasts; `false` when it has lapsed (give them to the object).
pub fn give_back(object: &str, bucket: &'static str, tokens: u64) -> bool {
    with(|m| match m.limits.get_mut(object).and_then(|o| o.batches.get_mut(bucket)) {
        Some(b) if b.expires_ms > now_ms() => {
            b.left = b.left.saturating_add(tokens.min(u32::MAX as u64) as u32);
            true
        }
        _ => false,
    })
}

/// The shard of the service-wide ceiling this isolate draws from now: the
/// same one while its batch lasts, then the next, so one isolate draws on
/// all of them in turn.
pub fn global_shard(shards: u32) -> u32 {
    let now = now_ms();
    with(|m| {
        let shards = shards.max(1);
        let current = m.next_shard % shards;
        let o = m.limits.get(&format!("global:{current}"));
        let busy = o.is_some_and(|o| o.refreshing.is_some() || o.batches.get("requests").is_some_and(|b| b.left > 0 && b.expires_ms > now));
        if !busy {
            m.next_shard = (current + 1) % shards;
        }
        m.next_shard
    })
}

// ------------------------------------------------------------------- usage

/// Queues a usage row; it reaches D1 with the next flush.
pub fn record(env: &Env, worker_ctx: &worker::Context, row: UsageRecord) {
    with(|m| m.ledger.push((row, 0)));
    schedule_flush(env, worker_ctx);
}

/// Writes the usage buffer now (reads of the ledger call this first).
pub async fn write_usage(env: &Env) {
    let rows = with(|m| std::mem::take(&mut m.ledger));
    if rows.is_empty() {
        return;
    }
    let db = match env.d1("DB") {
        Ok(db) => db,
        Err(e) => {
            logging::emit(logging::error("usage.record_failed").field("rows", rows.len()).field("detail", e.to_string()));
            return;
        }
    };
    let records: Vec<UsageRecord> = rows.iter().map(|(r, _)| r.clone()).collect();
    match usage_repo::record_many(&db, &records).await {
        Ok(()) => logging::emit(logging::info("usage.recorded").field("rows", records.len())),
        Err(e) => {
            let retry: Vec<(UsageRecord, u8)> = rows.into_iter().filter(|(_, n)| *n < LEDGER_RETRIES).map(|(r, n)| (r, n + 1)).collect();
            logging::emit(
                logging::error("usage.record_failed")
                    .field("rows", records.len())
                    .field("retrying", retry.len())
                    .field("detail", e.to_string()),
            );
            with(|m| m.ledger.extend(retry));
        }
    }
}

// ----------------------------------------------------------------- flusher

fn schedule_flush(env: &Env, worker_ctx: &worker::Context) {
    let now = now_ms();
    let start = with(|m| {
        if m.flusher_until_ms > now {
            return false;
        }
        m.flusher_until_ms = now + FLUSH_EVERY_MS as i64 * 4;
        true
    });
    if start {
        worker_ctx.wait_until(flusher(env.clone()));
    }
}

/// Every `FLUSH_EVERY_MS` while there is anything to report: spending to
/// the wallets (shrinking idle leases) and usage rows to D1.
async fn flusher(env: Env) {
    let began = now_ms();
    loop {
        worker::Delay::from(Duration::from_millis(FLUSH_EVERY_MS)).await;
        let now = now_ms();
        with(|m| m.flusher_until_ms = now + FLUSH_EVERY_MS as i64 * 4);
        let due: Vec<(String, bool)> = with(|m| {
            m.wallets
                .iter()
                .filter(|(_, w)| {
                    w.lease.spent != w.applied || (now - w.last_used_ms > IDLE_AFTER_MS && w.lease.grant.amounts != LeaseAmounts::default())
                })
                .map(|(k, w)| (k.clone(), now - w.last_used_ms > IDLE_AFTER_MS))
                .collect()
        });
        for (key, idle) in due {
            let est = if idle { None } else { with(|m| m.wallets.get(&key).and_then(|w| w.last_estimate)) };
            let _ = renew(&env, &key, est, None).await;
        }
        write_usage(&env).await;
        let done = with(|m| {
            let now = now_ms();
            let quiet = m.ledger.is_empty() && m.wallets.values().all(|w| w.lease.is_settled(&w.applied) || w.renewing.is_some());
            let done = quiet || now - began > FLUSHER_SPAN_MS;
            if done {
                m.flusher_until_ms = 0;
                // Forget settled leases of accounts gone quiet.
                m.wallets.retain(|_, w| !(w.lease.is_settled(&w.applied) && now - w.last_used_ms > IDLE_AFTER_MS));
            }
            done
        });
        if done {
            return;
        }
    }
}
