//! Operator routes for accounts: the first operator, new accounts with their
//! owner and first key, account detail, and credit adjustments.

use dex_shared::accounts::{AccountSpec, NewAccountRequest};
use dex_shared::error::ApiError;
use dex_shared::money::{micros_to_usd_string, usd_json_to_micros};
use dex_shared::password::{hash_password, ITERATIONS};
use dex_shared::time::rfc3339;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Method, Request};

use crate::auth::{self, hash_secret};
use crate::durable;
use crate::edge::{json_response, limit_param, query_param, read_json, read_json_or_default, Ctx, HandlerResult, OrInternal};
use crate::ids::{new_api_key, new_id, random_bytes};
use crate::logging;
use crate::repositories::accounts::{self, AccountRow, NewAccount};
use crate::repositories::api_keys::{self, NewKey};
use crate::repositories::users::{self, NewUser};
use crate::repositories::{changes, is_unique_violation, sessions};

fn account_json(a: &AccountRow) -> Value {
    json!({"id": a.id, "name": a.name, "kind": a.kind, "plan": a.plan, "status": a.status, "created_at": rfc3339(a.created_at)})
}

struct Created {
    account_id: String,
    user_id: String,
    key_id: String,
    full_key: String,
    prefix: String,
    last4: String,
}

/// Writes account, owner and first key in one D1 batch (one transaction).
/// Returns `None` when the owner insert was skipped by its condition.
async fn create_owner_account(ctx: &Ctx, spec: &AccountSpec, operator: bool) -> Result<Option<Created>, ApiError> {
    let db = ctx.db()?;
    let now = ctx.now_ms();
    let account_id = new_id("acct");
    let user_id = new_id("usr");
    let key_id = new_id("key");
    let minted = new_api_key();
    let key_hash = hash_secret(ctx, &minted.full_key)?;
    let password_hash = hash_password(&spec.password, &random_bytes::<16>(), ITERATIONS);
    let account = NewAccount {
        id: &account_id,
        name: &spec.name,
        kind: if operator { "organization" } else { "personal" },
        plan: spec.plan,
        now_ms: now,
    };
    let user = NewUser {
        id: &user_id,
        account_id: &account_id,
        email: Some(&spec.email),
        phone: None,
        password_hash: Some(&password_hash),
        role: "owner",
        is_operator: operator,
        tenant_id: None,
        now_ms: now,
    };
    let key = NewKey {
        id: &key_id,
        account_id: &account_id,
        user_id: &user_id,
        key_hash: &key_hash,
        prefix: &minted.display.prefix,
        last4: &minted.display.last4,
        name: &spec.key_name,
        now_ms: now,
    };
    let user_stmt =
        if operator { users::insert_first_operator(&db, &user) } else { users::insert(&db, &user) }.or_internal("prepare user")?;
    let stmts = vec![
        accounts::insert(&db, &account).or_internal("prepare account")?,
        user_stmt,
        api_keys::insert(&db, &key).or_internal("prepare key")?,
    ];
    let results = match db.batch(stmts).await {
        Ok(r) => r,
        Err(e) if is_unique_violation(&e) => return Err(ApiError::conflict("email_taken", "An account with this email already exists.")),
        Err(e) => return Err(e).or_internal("create account"),
    };
    if results.get(1).map(changes) != Some(1) {
        // The conditional owner insert did not happen: undo the account row.
        if let Ok(stmt) = accounts::delete(&db, &account_id) {
            let _ = stmt.run().await;
        }
        return Ok(None);
    }
    Ok(Some(Created { account_id, user_id, key_id, full_key: minted.full_key, prefix: minted.display.prefix, last4: minted.display.last4 }))
}

/// New prepaid accounts get `STARTING_CREDIT_USD` once (idempotent by a
/// fixed key, so a retried sign-up never grants it twice).
pub async fn grant_starting_credit(ctx: &Ctx, account_id: &str, plan: &str) {
    if plan != "prepaid" {
        return;
    }
    let Some(amount) = ctx.config().get("STARTING_CREDIT_USD").and_then(|v| dex_shared::money::parse_usd(&v)).filter(|a| *a > 0) else {
        return;
    };
    let call = json!({"amount_micros": amount, "reason": "starting credit", "idempotency_key": "starting-credit", "now_ms": ctx.now_ms()});
    if let Err(e) = durable::call::<Value>(&ctx.env, "WALLET", account_id, Method::Post, "/credit", Some(&call)).await {
        logging::emit(logging::error("wallet.starting_credit_failed").field("account_id", account_id).field("detail", e.to_string()));
    }
}

fn created_json(c: &Created, spec: &AccountSpec, operator: bool) -> Value {
    json!({
        "account": {"id": c.account_id, "name": spec.name, "plan": spec.plan, "status": "active"},
        "user": {"id": c.user_id, "account_id": c.account_id, "email": spec.email, "role": "owner", "operator": operator},
        "api_key": {"id": c.key_id, "key": c.full_key, "prefix": c.prefix, "last4": c.last4},
    })
}

/// `POST /v1/admin/bootstrap`: the first operator, once.
pub async fn bootstrap(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: NewAccountRequest = read_json(ctx, &mut req).await?;
    let mut spec = body.validate()?;
    spec.plan = "prepaid";
    if users::operator_exists(&ctx.db()?).await.or_internal("operator check")? {
        return Err(ApiError::conflict("already_bootstrapped", "An operator already exists; bootstrap runs once."));
    }
    match create_owner_account(ctx, &spec, true).await? {
        Some(c) => {
            logging::emit(logging::info("admin.bootstrapped").field("user_id", c.user_id.as_str()));
            json_response(201, &created_json(&c, &spec, true))
        }
        None => Err(ApiError::conflict("already_bootstrapped", "An operator already exists; bootstrap runs once.")),
    }
}

/// `POST /v1/admin/accounts`: an account, its owner and first API key.
pub async fn create(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: NewAccountRequest = read_json(ctx, &mut req).await?;
    let spec = body.validate()?;
    let created = create_owner_account(ctx, &spec, false).await?.ok_or_else(ApiError::internal)?;
    grant_starting_credit(ctx, &created.account_id, spec.plan).await;
    logging::emit(logging::info("admin.account_created").field("account_id", created.account_id.as_str()).field("plan", spec.plan));
    json_response(201, &created_json(&created, &spec, false))
}

fn wallet_json(balance_micros: i64) -> Value {
    json!({"balance_micros": balance_micros, "balance_usd": micros_to_usd_string(balance_micros)})
}

async fn existing_account(ctx: &Ctx, id: &str) -> Result<AccountRow, ApiError> {
    accounts::get(&ctx.db()?, id).await.or_internal("account lookup")?.ok_or_else(|| ApiError::not_found(format!("No account {id}.")))
}

/// `GET /v1/admin/accounts/:id`.
pub async fn get(ctx: &Ctx, id: &str) -> HandlerResult {
    let account = existing_account(ctx, id).await?;
    let db = ctx.db()?;
    let members = users::list_by_account(&db, id).await.or_internal("users")?;
    let keys = api_keys::list_by_account(&db, id).await.or_internal("keys")?;
    let mut wallet = super::usage::wallet_summary(ctx, id).await?;
    wallet["balance_usd"] = json!(micros_to_usd_string(wallet["balance_micros"].as_i64().unwrap_or(0)));
    json_response(
        200,
        &json!({
            "account": account_json(&account),
            "users": members.iter().map(|u| json!({"id": u.id, "account_id": u.account_id, "email": u.email, "role": u.role, "operator": u.is_operator == 1, "status": u.status})).collect::<Vec<_>>(),
            "api_keys": keys.iter().map(|k| json!({"id": k.id, "name": k.name, "display": format!("{}…{}", k.prefix, k.last4), "status": k.status, "created_at": rfc3339(k.created_at), "last_used_at": k.last_used_at.map(rfc3339)})).collect::<Vec<_>>(),
            "wallet": wallet,
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditBody {
    amount_usd: Value,
    reason: String,
    idempotency_key: String,
}

/// `POST /v1/admin/accounts/:id/credits`: operator adjustment, once per key.
pub async fn credit(ctx: &Ctx, id: &str, mut req: Request) -> HandlerResult {
    let body: CreditBody = read_json(ctx, &mut req).await?;
    let amount = usd_json_to_micros(&body.amount_usd).filter(|a| *a != 0).ok_or_else(|| {
        ApiError::bad_request("invalid_amount", "amount_usd must be a non-zero decimal USD amount with at most 6 decimals")
    })?;
    let reason = body.reason.trim();
    let idem = body.idempotency_key.trim();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::bad_request("invalid_reason", "reason is required (at most 500 characters)"));
    }
    if idem.is_empty() || idem.len() > 200 {
        return Err(ApiError::bad_request("invalid_idempotency_key", "idempotency_key is required (at most 200 characters)"));
    }
    existing_account(ctx, id).await?;
    let call = json!({"amount_micros": amount, "reason": reason, "idempotency_key": idem, "now_ms": ctx.now_ms()});
    let (status, answer) =
        durable::call::<Value>(&ctx.env, "WALLET", id, Method::Post, "/credit", Some(&call)).await.or_internal("wallet credit")?;
    let balance = answer["balance_micros"].as_i64();
    match (status, answer["error"].as_str()) {
        (200, _) => {
            let applied = answer["applied"].as_bool().unwrap_or(false);
            logging::emit(logging::info("admin.credit").field("account_id", id).field("amount_micros", amount).field("applied", applied));
            let mut out = wallet_json(balance.unwrap_or(0));
            out["applied"] = json!(applied);
            json_response(200, &out)
        }
        (409, _) => Err(ApiError::conflict("idempotency_conflict", "This idempotency_key was already used with a different amount.")),
        (400, Some("insufficient_balance")) => {
            Err(ApiError::bad_request("insufficient_balance", "The adjustment would make the balance negative."))
        }
        _ => Err(ApiError::internal()),
    }
}

/// Sets an account's status and makes it bite at once: cached key contexts
/// are dropped and, on suspension, live sessions ended. Shared by operators
/// and Stripe events (payment failed / paid). False if no such account.
pub async fn apply_status(env: &worker::Env, id: &str, status: &str, reason: Option<&str>, now: i64) -> Result<bool, ApiError> {
    let db = env.d1("DB").or_internal("binding DB")?;
    if !accounts::set_status(&db, id, status, reason, now).await.or_internal("set status")? {
        return Ok(false);
    }
    let hashes = api_keys::account_hashes(&db, id).await.or_internal("key hashes")?;
    auth::forget_keys(env, &hashes).await;
    if status == "suspended" {
        for family in sessions::live_families_of_account(&db, id, now).await.or_internal("sessions")? {
            auth::revoke_session_family(env, &family).await?;
        }
    }
    logging::emit(logging::info("account.status").field("account_id", id).field("status", status));
    Ok(true)
}

/// `GET /v1/admin/users?limit=&cursor=`: keyset pages, newest last.
pub async fn list_users(ctx: &Ctx, req: &Request) -> HandlerResult {
    let limit = limit_param(req, 50, 200)?;
    let after = match query_param(req, "cursor") {
        None => None,
        Some(c) => Some(parse_cursor(&c).ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor is not one this API returned"))?),
    };
    let rows = users::page(&ctx.db()?, after, limit).await.or_internal("users page")?;
    let next = if rows.len() as u32 == limit { rows.last().map(|u| format!("{}.{}", u.created_at, u.id)) } else { None };
    json_response(
        200,
        &json!({
            "data": rows.iter().map(|u| json!({"id": u.id, "account_id": u.account_id, "email": u.email, "phone": u.phone, "role": u.role, "operator": u.is_operator == 1, "status": u.status, "created_at": rfc3339(u.created_at)})).collect::<Vec<_>>(),
            "next_cursor": next,
        }),
    )
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (t, id) = c.split_once('.')?;
    Some((t.parse().ok()?, id.to_string()))
}

#[derive(Deserialize, Default)]
struct StatusBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/admin/accounts/:id/suspend` and `/reactivate`. Suspension
/// takes effect at once: cached key contexts are dropped and live sessions
/// ended.
pub async fn set_status(ctx: &Ctx, id: &str, mut req: Request, suspend: bool) -> HandlerResult {
    let body: StatusBody = read_json_or_default(ctx, &mut req).await?;
    let reason = body.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.len() > 500) {
        return Err(ApiError::bad_request("invalid_reason", "reason is limited to 500 characters"));
    }
    let (status, reason) = if suspend { ("suspended", reason.or(Some("suspended by operator"))) } else { ("active", None) };
    if !apply_status(&ctx.env, id, status, reason, ctx.now_ms()).await? {
        return Err(ApiError::not_found(format!("No account {id}.")));
    }
    let account = existing_account(ctx, id).await?;
    json_response(200, &json!({"account": account_json(&account)}))
}
