//! API keys: the `/v1/api-keys` family (Dex), the Dexto CLI's routes
//! (`/api/keys`, `/keys/*`, `/api/provision`), and validation.
//! The full key is returned once, at creation; lists show display parts only.

use dex_shared::error::ApiError;
use dex_shared::keys::looks_like_api_key;
use dex_shared::time::rfc3339;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::Request;

use crate::auth::{self, Principal};
use crate::edge::{bearer, json_response, read_json_or_default, Ctx, HandlerResult, OrInternal};
use crate::ids::{new_api_key, new_id};
use crate::logging;
use crate::repositories::api_keys::{self, KeySummary, NewKey};

/// The name the Dexto CLI gives the key it provisions.
const DEXTO_CLI_KEY_NAME: &str = "Dexto CLI Key";
const MAX_ACTIVE_KEYS: usize = 50;

pub struct Issued {
    pub id: String,
    pub full_key: String,
    pub name: String,
    pub display: String,
}

fn display(prefix: &str, last4: &str) -> String {
    format!("{prefix}…{last4}")
}

fn clean_name(name: Option<&str>, default: &str) -> Result<String, ApiError> {
    let n = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(default);
    if n.chars().count() > 100 {
        return Err(ApiError::bad_request("invalid_name", "name is limited to 100 characters"));
    }
    Ok(n.to_string())
}

/// Mints a key for the caller's user in the caller's account, after revoking
/// `replacing` (all in one D1 batch, so a rotation never leaves zero or two).
pub async fn mint(ctx: &Ctx, account_id: &str, user_id: &str, name: &str, replacing: &[KeySummary]) -> Result<Issued, ApiError> {
    let db = ctx.db()?;
    let now = ctx.now_ms();
    let active = api_keys::list_by_account(&db, account_id).await.or_internal("keys")?.iter().filter(|k| k.status == "active").count();
    if active.saturating_sub(replacing.len()) >= MAX_ACTIVE_KEYS {
        return Err(ApiError::conflict("too_many_keys", "This account has the maximum of 50 active keys; revoke one first."));
    }
    let minted = new_api_key();
    let id = new_id("key");
    let hash = auth::hash_secret(ctx, &minted.full_key)?;
    let mut stmts = Vec::new();
    for old in replacing {
        stmts.push(api_keys::revoke_stmt(&db, account_id, &old.id, now).or_internal("prepare")?);
    }
    let key = NewKey {
        id: &id,
        account_id,
        user_id,
        key_hash: &hash,
        prefix: &minted.display.prefix,
        last4: &minted.display.last4,
        name,
        now_ms: now,
    };
    stmts.push(api_keys::insert(&db, &key).or_internal("prepare")?);
    db.batch(stmts).await.or_internal("mint key")?;
    forget(ctx, replacing).await;
    logging::emit(
        logging::info("keys.minted").field("key_id", id.as_str()).field("account_id", account_id).field("replaced", replacing.len()),
    );
    Ok(Issued { id, full_key: minted.full_key, name: name.to_string(), display: display(&minted.display.prefix, &minted.display.last4) })
}

async fn forget(ctx: &Ctx, keys: &[KeySummary]) {
    if keys.is_empty() {
        return;
    }
    if let Ok(db) = ctx.db() {
        let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
        if let Ok(hashes) = api_keys::hashes(&db, &ids).await {
            auth::forget_keys(&ctx.env, &hashes).await;
        }
    }
}

/// Keys the caller may see: all of the account's for owners and admins,
/// their own for members.
async fn visible_keys(ctx: &Ctx, who: &Principal) -> Result<Vec<KeySummary>, ApiError> {
    let all = api_keys::list_by_account(&ctx.db()?, &who.account_id).await.or_internal("keys")?;
    Ok(all.into_iter().filter(|k| who.manages_account_keys() || k.user_id == who.user_id).collect())
}

/// A key the caller may act on. Another account's key is "not found", never
/// "forbidden", so ids of other tenants cannot be probed.
async fn own_key(ctx: &Ctx, who: &Principal, key_id: &str) -> Result<KeySummary, ApiError> {
    let key = api_keys::get_in_account(&ctx.db()?, &who.account_id, key_id).await.or_internal("key")?;
    match key {
        Some(k) if who.manages_account_keys() || k.user_id == who.user_id => Ok(k),
        _ => Err(ApiError::not_found(format!("No API key {key_id}."))),
    }
}

fn v1_json(k: &KeySummary) -> Value {
    json!({
        "id": k.id, "name": k.name, "prefix": k.prefix, "last4": k.last4, "display": display(&k.prefix, &k.last4),
        "status": k.status, "scopes": serde_json::from_str::<Value>(&k.scopes).unwrap_or(json!(["*"])),
        "created_at": rfc3339(k.created_at), "last_used_at": k.last_used_at.map(rfc3339), "revoked_at": k.revoked_at.map(rfc3339),
    })
}

fn dexto_json(k: &KeySummary) -> Value {
    json!({
        "id": k.id, "name": k.name, "status": k.status, "isActive": k.status == "active",
        "keyDisplay": display(&k.prefix, &k.last4), "createdAt": rfc3339(k.created_at), "lastUsedAt": k.last_used_at.map(rfc3339),
    })
}

fn issued_v1(i: &Issued) -> Value {
    json!({"id": i.id, "name": i.name, "key": i.full_key, "display": i.display, "status": "active"})
}

#[derive(Deserialize, Default)]
struct CreateBody {
    #[serde(default)]
    name: Option<String>,
}

// ---- /v1/api-keys ------------------------------------------------------

pub async fn v1_list(ctx: &Ctx, who: &Principal) -> HandlerResult {
    let keys = visible_keys(ctx, who).await?;
    json_response(200, &json!({"data": keys.iter().map(v1_json).collect::<Vec<_>>()}))
}

pub async fn v1_create(ctx: &Ctx, who: &Principal, mut req: Request) -> HandlerResult {
    let body: CreateBody = read_json_or_default(ctx, &mut req).await?;
    let name = clean_name(body.name.as_deref(), "default")?;
    let issued = mint(ctx, &who.account_id, &who.user_id, &name, &[]).await?;
    json_response(201, &issued_v1(&issued))
}

pub async fn v1_revoke(ctx: &Ctx, who: &Principal, key_id: &str) -> HandlerResult {
    let key = own_key(ctx, who, key_id).await?;
    if key.status == "active" {
        let db = ctx.db()?;
        api_keys::revoke_stmt(&db, &who.account_id, key_id, ctx.now_ms()).or_internal("prepare")?.run().await.or_internal("revoke")?;
        forget(ctx, std::slice::from_ref(&key)).await;
        logging::emit(logging::info("keys.revoked").field("key_id", key_id));
    }
    json_response(200, &json!({"id": key_id, "status": "revoked"}))
}

pub async fn v1_rotate(ctx: &Ctx, who: &Principal, key_id: &str) -> HandlerResult {
    let key = own_key(ctx, who, key_id).await?;
    if key.status != "active" {
        return Err(ApiError::conflict("key_revoked", "A revoked key cannot be rotated; create a new one."));
    }
    let issued = mint(ctx, &who.account_id, &key.user_id, &key.name, std::slice::from_ref(&key)).await?;
    json_response(200, &json!({"revoked": key_id, "api_key": issued_v1(&issued)}))
}

// ---- Dexto CLI ---------------------------------------------------------

/// `GET /api/keys`.
pub async fn dexto_list(ctx: &Ctx, who: &Principal) -> HandlerResult {
    let keys = visible_keys(ctx, who).await?;
    json_response(200, &json!({"success": true, "data": keys.iter().map(dexto_json).collect::<Vec<_>>()}))
}

/// `POST /api/keys {name}` → `{"success":true,"data":{"id","fullKey"}}`.
pub async fn dexto_create(ctx: &Ctx, who: &Principal, mut req: Request) -> HandlerResult {
    let body: CreateBody = read_json_or_default(ctx, &mut req).await?;
    let name = clean_name(body.name.as_deref(), DEXTO_CLI_KEY_NAME)?;
    let i = mint(ctx, &who.account_id, &who.user_id, &name, &[]).await?;
    json_response(201, &json!({"success": true, "data": {"id": i.id, "fullKey": i.full_key, "name": i.name, "keyDisplay": i.display}}))
}

/// `DELETE /api/keys/:id`.
pub async fn dexto_delete(ctx: &Ctx, who: &Principal, key_id: &str) -> HandlerResult {
    v1_revoke(ctx, who, key_id).await?;
    json_response(200, &json!({"success": true}))
}

#[derive(Deserialize, Default)]
struct ProvisionBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    regenerate: Option<bool>,
}

/// `POST /api/provision` and `POST /keys/provision {name, regenerate}`:
/// provisioning a name replaces that name's active key, so the CLI always
/// leaves with one working key it holds the secret of.
pub async fn provision(ctx: &Ctx, who: &Principal, mut req: Request) -> HandlerResult {
    let body: ProvisionBody = read_json_or_default(ctx, &mut req).await?;
    let name = clean_name(body.name.as_deref(), DEXTO_CLI_KEY_NAME)?;
    let _ = body.regenerate; // the secret is shown once, so every call mints
    let existing = api_keys::active_named(&ctx.db()?, &who.account_id, &name).await.or_internal("keys")?;
    let replacing: Vec<KeySummary> = existing.into_iter().filter(|k| who.manages_account_keys() || k.user_id == who.user_id).collect();
    let i = mint(ctx, &who.account_id, &who.user_id, &name, &replacing).await?;
    json_response(200, &json!({"success": true, "dextoApiKey": i.full_key, "keyId": i.id, "isNewKey": true, "replaced": replacing.len()}))
}

/// `POST /keys/rotate` (API key): the presented key is replaced by a new one.
pub async fn rotate_presented(ctx: &Ctx, who: &Principal) -> HandlerResult {
    let key = who.key().ok_or_else(|| ApiError::unauthorized("Send the API key to rotate."))?;
    let current = own_key(ctx, who, &key.key_id).await?;
    let i = mint(ctx, &who.account_id, &current.user_id, &current.name, std::slice::from_ref(&current)).await?;
    json_response(200, &json!({"success": true, "dextoApiKey": i.full_key, "keyId": i.id, "isNewKey": true, "revokedKeyId": current.id}))
}

/// `GET /keys/list`.
pub async fn list_compat(ctx: &Ctx, who: &Principal) -> HandlerResult {
    dexto_list(ctx, who).await
}

/// `GET /keys/validate` and `/api/keys/validate`: `{"valid":bool}`. A bad or
/// revoked key is `false` with 200, the answer the CLI expects; the check
/// itself is the same as every other route's.
pub async fn validate(ctx: &Ctx, req: &Request) -> HandlerResult {
    let presented = bearer(req).unwrap_or_default();
    if !looks_like_api_key(&presented) {
        return json_response(200, &json!({"valid": false}));
    }
    match auth::key_context(ctx, &presented).await {
        Ok(k) => {
            auth::rate_limit(ctx, &k).await?;
            json_response(200, &json!({"valid": true, "keyId": k.key_id, "accountId": k.account_id}))
        }
        Err(e) if e.status == 401 || e.status == 403 => json_response(200, &json!({"valid": false})),
        Err(e) => Err(e),
    }
}
