//! Sign-in: e-mail and password (Dex), phone codes (Karen tenants), refresh
//! with rotation and reuse detection, logout, and API key → token exchange.

use dex_shared::accounts::{normalize_email, normalize_phone};
use dex_shared::error::ApiError;
use dex_shared::jwt::{AccessClaims, ACCESS_TTL_SECS};
use dex_shared::password::{hash_password, password_problem, verify_password, DECOY_HASH, ITERATIONS};
use dex_shared::sessions::{judge_refresh, looks_like_refresh_token, refresh_token, RefreshVerdict, SessionState, REFRESH_TTL_MS};
use serde::Deserialize;
use serde_json::{json, Value};
use worker::Request;

use crate::auth::{self, Principal, Via};
use crate::edge::{bearer, json_response, read_json, read_json_or_default, Ctx, HandlerResult, OrInternal};
use crate::ids::{new_id, random_bytes};
use crate::logging;
use crate::providers::twilio::{CheckResult, Verify};
use crate::repositories::accounts::{self, NewAccount};
use crate::repositories::sessions::{self, NewSession};
use crate::repositories::users::{self, NewUser, UserAuthRow};
use crate::repositories::{changes, is_unique_violation};

fn bad_credentials() -> ApiError {
    ApiError::new(401, "authentication_error", "invalid_credentials", "Invalid email or password.")
}

fn invalid_refresh() -> ApiError {
    ApiError::new(401, "authentication_error", "invalid_refresh_token", "Invalid or expired refresh token. Sign in again.")
}

pub fn user_json(u: &UserAuthRow) -> Value {
    json!({
        "id": u.id, "account_id": u.account_id, "email": u.email, "phone": u.phone,
        "role": u.role, "tenant_id": u.tenant_id, "operator": u.is_operator == 1,
    })
}

/// A new session: refresh token (stored hashed) in `family` (new if None)
/// and a short access token naming that family.
async fn open_session(ctx: &Ctx, user: &UserAuthRow, family: Option<&str>) -> Result<Value, ApiError> {
    let now = ctx.now_ms();
    let family_id = family.map(str::to_string).unwrap_or_else(|| new_id("fam"));
    let refresh = refresh_token(&random_bytes::<32>());
    let session_id = new_id("ses");
    let hash = auth::hash_secret(ctx, &refresh)?;
    let row = NewSession {
        id: &session_id,
        user_id: &user.id,
        family_id: &family_id,
        token_hash: &hash,
        now_ms: now,
        expires_at: now + REFRESH_TTL_MS,
    };
    sessions::insert(&ctx.db()?, &row).await.or_internal("session insert")?;
    let claims = AccessClaims {
        sub: user.id.clone(),
        account_id: user.account_id.clone(),
        tenant_id: user.tenant_id.clone(),
        role: user.role.clone(),
        op: user.is_operator == 1,
        sid: family_id,
    };
    let token = auth::issue_access_token(ctx, &claims)?;
    Ok(json!({"token": token, "token_type": "Bearer", "expires_in": ACCESS_TTL_SECS, "refresh_token": refresh, "user": user_json(user)}))
}

#[derive(Deserialize)]
struct RegisterBody {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /v1/auth/register`: a user and the account they own.
pub async fn register(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: RegisterBody = read_json(ctx, &mut req).await?;
    let email = normalize_email(&body.email)?;
    if let Some(p) = password_problem(&body.password) {
        return Err(ApiError::bad_request("weak_password", p));
    }
    auth::throttle_ip(ctx, &req).await?;
    let db = ctx.db()?;
    let now = ctx.now_ms();
    let (account_id, user_id) = (new_id("acct"), new_id("usr"));
    let name = body.name.as_deref().map(str::trim).filter(|n| !n.is_empty() && n.len() <= 200).unwrap_or(&email).to_string();
    let password_hash = hash_password(&body.password, &random_bytes::<16>(), ITERATIONS);
    let account = NewAccount { id: &account_id, name: &name, kind: "personal", plan: "prepaid", now_ms: now };
    let user = NewUser {
        id: &user_id,
        account_id: &account_id,
        email: Some(&email),
        phone: None,
        password_hash: Some(&password_hash),
        role: "owner",
        is_operator: false,
        tenant_id: None,
        now_ms: now,
    };
    let stmts = vec![accounts::insert(&db, &account).or_internal("prepare")?, users::insert(&db, &user).or_internal("prepare")?];
    match db.batch(stmts).await {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict("email_taken", "An account with this email already exists. Sign in instead."))
        }
        Err(e) => return Err(e).or_internal("register"),
    }
    logging::emit(logging::info("auth.registered").field("user_id", user_id.as_str()));
    super::accounts::grant_starting_credit(ctx, &account_id, "prepaid").await;
    let row = users::auth_by_id(&db, &user_id).await.or_internal("user")?.ok_or_else(ApiError::internal)?;
    json_response(201, &open_session(ctx, &row, None).await?)
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

/// `POST /v1/auth/login`. One answer for unknown e-mail and wrong password.
pub async fn login(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: LoginBody = read_json(ctx, &mut req).await?;
    let email = normalize_email(&body.email).map_err(|_| bad_credentials())?;
    auth::throttle_login(ctx, &req, &email).await?;
    let found = users::auth_by_email(&ctx.db()?, &email).await.or_internal("user lookup")?;
    let stored = found.as_ref().and_then(|u| u.password_hash.clone()).unwrap_or_else(|| DECOY_HASH.to_string());
    let password_ok = verify_password(&body.password, &stored);
    let user = match found {
        Some(u) if password_ok && u.status == "active" => u,
        _ => {
            logging::emit(logging::info("auth.login_failed"));
            return Err(bad_credentials());
        }
    };
    auth::require_active_account(ctx, &user.account_id).await?;
    logging::emit(logging::info("auth.login").field("user_id", user.id.as_str()));
    json_response(200, &open_session(ctx, &user, None).await?)
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// `POST /v1/auth/refresh` and `/auth/refresh`: rotation. A used token
/// presented again means a copy exists; the whole family is revoked.
pub async fn refresh(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: RefreshBody = read_json(ctx, &mut req).await?;
    if !looks_like_refresh_token(&body.refresh_token) {
        return Err(invalid_refresh());
    }
    let db = ctx.db()?;
    let now = ctx.now_ms();
    let hash = auth::hash_secret(ctx, &body.refresh_token)?;
    let session = sessions::by_token_hash(&db, &hash).await.or_internal("session lookup")?.ok_or_else(invalid_refresh)?;
    let state = SessionState { expires_at: session.expires_at, used_at: session.used_at, revoked_at: session.revoked_at };
    let verdict = match judge_refresh(state, now) {
        RefreshVerdict::Rotate if !sessions::mark_used(&db, &session.id, now).await.or_internal("mark used")? => RefreshVerdict::Reused,
        v => v,
    };
    match verdict {
        RefreshVerdict::Rotate => {}
        RefreshVerdict::Reused => {
            sessions::revoke_family(&db, &session.family_id, now).await.or_internal("revoke family")?;
            auth::revoke_session_family(&ctx.env, &session.family_id).await?;
            logging::emit(logging::warn("auth.refresh_reuse").field("user_id", session.user_id.as_str()));
            return Err(invalid_refresh());
        }
        RefreshVerdict::Revoked | RefreshVerdict::Expired => return Err(invalid_refresh()),
    }
    let user =
        users::auth_by_id(&db, &session.user_id).await.or_internal("user")?.filter(|u| u.status == "active").ok_or_else(invalid_refresh)?;
    auth::require_active_account(ctx, &user.account_id).await?;
    json_response(200, &open_session(ctx, &user, Some(&session.family_id)).await?)
}

#[derive(Deserialize, Default)]
struct LogoutBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// `POST /v1/auth/logout` and `/auth/logout`: ends the session family named
/// by the refresh token in the body, or by the access token presented.
pub async fn logout(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: LogoutBody = read_json_or_default(ctx, &mut req).await?;
    let db = ctx.db()?;
    let family = match body.refresh_token {
        Some(rt) => {
            let hash = auth::hash_secret(ctx, &rt)?;
            sessions::by_token_hash(&db, &hash).await.or_internal("session lookup")?.map(|s| s.family_id).ok_or_else(invalid_refresh)?
        }
        None => match bearer(&req) {
            Some(_) => match auth::session(ctx, &req).await?.via {
                Via::Session { sid } => sid,
                Via::Key(_) => return Err(invalid_refresh()),
            },
            None => {
                return Err(ApiError::bad_request(
                    "missing_refresh_token",
                    "Send refresh_token in the body or the access token in Authorization.",
                ))
            }
        },
    };
    sessions::revoke_family(&db, &family, ctx.now_ms()).await.or_internal("revoke")?;
    auth::revoke_session_family(&ctx.env, &family).await?;
    json_response(200, &json!({"success": true}))
}

/// `GET /v1/me`: the caller's user and account.
pub async fn me(ctx: &Ctx, who: &Principal) -> HandlerResult {
    let db = ctx.db()?;
    let user =
        users::auth_by_id(&db, &who.user_id).await.or_internal("user")?.ok_or_else(|| ApiError::unauthorized("Invalid credentials."))?;
    let account =
        accounts::get(&db, &who.account_id).await.or_internal("account")?.ok_or_else(|| ApiError::unauthorized("Invalid credentials."))?;
    let key = who.key().map(|k| json!({"id": k.key_id, "name": k.key_name, "prefix": k.key_prefix}));
    json_response(
        200,
        &json!({
            "user": user_json(&user),
            "account": {"id": account.id, "name": account.name, "kind": account.kind, "plan": account.plan, "status": account.status},
            "key": key,
        }),
    )
}

/// `POST /v1/auth/token`: an API key exchanged for a short access token.
pub async fn token_from_key(ctx: &Ctx, who: &Principal) -> HandlerResult {
    let key = who.key().ok_or_else(|| ApiError::unauthorized("Send an API key."))?;
    let claims = AccessClaims {
        sub: who.user_id.clone(),
        account_id: who.account_id.clone(),
        tenant_id: who.tenant_id.clone(),
        role: who.role.clone(),
        op: who.is_operator,
        // Its own family, so logging it out touches nothing else.
        sid: format!("key-{}", key.key_id),
    };
    let token = auth::issue_access_token(ctx, &claims)?;
    json_response(200, &json!({"token": token, "token_type": "Bearer", "expires_in": ACCESS_TTL_SECS}))
}

#[derive(Deserialize)]
struct SendCodeBody {
    phone: String,
}

/// `POST /auth/send-code`: Twilio Verify sends an SMS code.
pub async fn send_code(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: SendCodeBody = read_json(ctx, &mut req).await?;
    let phone = normalize_phone(&body.phone)?;
    auth::throttle_login(ctx, &req, &phone).await?;
    Verify::from_config(&ctx.config())?.send_code(&phone).await?;
    json_response(200, &json!({"success": true, "status": "pending"}))
}

#[derive(Deserialize)]
struct VerifyCodeBody {
    phone: String,
    code: String,
}

/// `POST /auth/verify-code`: an approved code signs in; the first sign-in of
/// a number creates its user and tenant account.
pub async fn verify_code(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: VerifyCodeBody = read_json(ctx, &mut req).await?;
    let phone = normalize_phone(&body.phone)?;
    let code = body.code.trim();
    if !(4..=10).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request("invalid_code", "code must be the 4 to 10 digits from the SMS"));
    }
    auth::throttle_login(ctx, &req, &format!("verify:{phone}")).await?;
    match Verify::from_config(&ctx.config())?.check_code(&phone, code).await? {
        CheckResult::Approved => {}
        CheckResult::Wrong => return Err(ApiError::new(401, "authentication_error", "invalid_code", "That code is not right. Try again.")),
        CheckResult::NotFound => {
            return Err(ApiError::new(
                401,
                "authentication_error",
                "code_expired",
                "No code is pending for this number. Request a new one.",
            ))
        }
    }
    let db = ctx.db()?;
    let user = match users::auth_by_phone(&db, &phone).await.or_internal("user lookup")? {
        Some(u) => u,
        None => create_phone_user(ctx, &phone).await?,
    };
    if user.status != "active" {
        return Err(ApiError::forbidden("user_disabled", "This user is disabled."));
    }
    auth::require_active_account(ctx, &user.account_id).await?;
    json_response(200, &open_session(ctx, &user, None).await?)
}

/// A tenant account owned by the phone's user; `tenant_id` is the account.
async fn create_phone_user(ctx: &Ctx, phone: &str) -> Result<UserAuthRow, ApiError> {
    let db = ctx.db()?;
    let now = ctx.now_ms();
    let (account_id, user_id) = (new_id("acct"), new_id("usr"));
    let account = NewAccount { id: &account_id, name: phone, kind: "tenant", plan: "prepaid", now_ms: now };
    let user = NewUser {
        id: &user_id,
        account_id: &account_id,
        email: None,
        phone: Some(phone),
        password_hash: None,
        role: "owner",
        is_operator: false,
        tenant_id: Some(&account_id),
        now_ms: now,
    };
    let results =
        db.batch(vec![accounts::insert(&db, &account).or_internal("prepare")?, users::insert(&db, &user).or_internal("prepare")?]).await;
    match results {
        Ok(r) if r.get(1).map(changes) == Some(1) => super::accounts::grant_starting_credit(ctx, &account_id, "prepaid").await,
        // Two first sign-ins of one number raced; the other one created it.
        Err(e) if is_unique_violation(&e) => {}
        Ok(_) => return Err(ApiError::internal()),
        Err(e) => return Err(e).or_internal("create phone user"),
    }
    users::auth_by_phone(&db, phone).await.or_internal("user lookup")?.ok_or_else(ApiError::internal)
}
