//! Device-code sign-in for CLIs (RFC 8628 in the Dexto CLI's dialect): the
//! CLI starts, a signed-in user approves the user code, the CLI's next poll
//! receives a freshly minted API key, once.

use dex_shared::error::ApiError;
use dex_shared::keys::base62;
use dex_shared::sessions::{judge_device_poll, normalize_user_code, user_code, DevicePoll, DEVICE_CODE_TTL_MS, DEVICE_POLL_INTERVAL_SECS};
use serde::Deserialize;
use serde_json::json;
use worker::Request;

use crate::auth::{self, Principal};
use crate::edge::{json_response, read_json, read_json_or_default, Ctx, HandlerResult, OrInternal};
use crate::handlers::keys;
use crate::ids::{new_id, random_bytes};
use crate::repositories::device_codes::{self, NewDeviceCode};
use crate::repositories::users;

#[derive(Deserialize, Default)]
struct StartBody {
    #[serde(default)]
    client: Option<String>,
}

/// `POST /api/auth/device/start {client}`.
pub async fn start(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: StartBody = read_json_or_default(ctx, &mut req).await?;
    auth::throttle_ip(ctx, &req).await?;
    let client = body.client.as_deref().map(str::trim).filter(|c| !c.is_empty() && c.len() <= 50).unwrap_or("dexto-cli");
    let device_code = format!("dc_{}", base62(&random_bytes::<32>()));
    let code = user_code(&random_bytes::<8>());
    let now = ctx.now_ms();
    let row = NewDeviceCode {
        id: &new_id("dev"),
        code_hash: &auth::hash_secret(ctx, &device_code)?,
        user_code: &code,
        key_name: if client == "dexto-cli" { "Dexto CLI Key" } else { client },
        interval_secs: DEVICE_POLL_INTERVAL_SECS,
        now_ms: now,
        expires_at: now + DEVICE_CODE_TTL_MS,
    };
    device_codes::insert(&ctx.db()?, &row).await.or_internal("device insert")?;
    let app = ctx.config().base_url("APP_BASE_URL").unwrap_or_else(|| "https://dexto.ai".into());
    json_response(
        200,
        &json!({
            "deviceCode": device_code,
            "userCode": code,
            "verificationUri": format!("{app}/device"),
            "verificationUriComplete": format!("{app}/device?user_code={code}"),
            "expiresIn": DEVICE_CODE_TTL_MS / 1000,
            "interval": DEVICE_POLL_INTERVAL_SECS,
        }),
    )
}

#[derive(Deserialize)]
struct PollBody {
    #[serde(rename = "deviceCode", alias = "device_code")]
    device_code: String,
}

fn poll_error(status: u16, code: &'static str, message: &str) -> ApiError {
    ApiError::new(status, "invalid_request_error", code, message)
}

/// `POST /api/auth/device/poll {deviceCode}`: 200 `{"status":"pending"}`,
/// 429 when polled faster than `interval`, 404 expired or unknown, 403
/// denied, 410 already delivered; on approval the key, once.
pub async fn poll(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let body: PollBody = read_json(ctx, &mut req).await?;
    let db = ctx.db()?;
    let now = ctx.now_ms();
    let hash = auth::hash_secret(ctx, &body.device_code)?;
    let row = device_codes::by_code_hash(&db, &hash)
        .await
        .or_internal("device lookup")?
        .ok_or_else(|| poll_error(404, "expired_token", "Unknown or expired device code. Start again."))?;
    let verdict = judge_device_poll(&row.status, row.expires_at, row.last_polled_at, row.interval_secs, now);
    if verdict != DevicePoll::SlowDown {
        device_codes::polled(&db, &row.id, now).await.or_internal("device poll")?;
    }
    match verdict {
        DevicePoll::Pending => json_response(200, &json!({"status": "pending"})),
        DevicePoll::SlowDown => {
            let mut e = poll_error(429, "slow_down", "Polling too fast; wait the interval between polls.");
            e.retry_after_secs = Some(row.interval_secs as u64);
            Err(e)
        }
        DevicePoll::Expired => Err(poll_error(404, "expired_token", "The device code expired. Start again.")),
        DevicePoll::Denied => Err(poll_error(403, "access_denied", "The sign-in was denied.")),
        DevicePoll::Consumed => Err(poll_error(410, "already_used", "This device code was already used.")),
        DevicePoll::Deliver => {
            let user_id = row.approved_user_id.clone().ok_or_else(ApiError::internal)?;
            let user = users::get(&db, &user_id)
                .await
                .or_internal("user")?
                .ok_or_else(|| poll_error(403, "access_denied", "The approving user is gone."))?;
            auth::require_active_account(ctx, &user.account_id).await?;
            // Claim the code first: of two racing polls only one mints.
            if !device_codes::consume(&db, &row.id, now).await.or_internal("device consume")? {
                return Err(poll_error(410, "already_used", "This device code was already used."));
            }
            let issued = keys::mint(ctx, &user.account_id, &user.id, &row.key_name, &[]).await?;
            let _ = device_codes::record_key(&db, &row.id, &issued.id).await;
            json_response(
                200,
                &json!({
                    "status": "approved",
                    "fullKey": issued.full_key,
                    "apiKey": {"id": issued.id, "keyDisplay": issued.display, "name": issued.name, "scopes": ["*"], "status": "active"},
                }),
            )
        }
    }
}

#[derive(Deserialize)]
struct DecideBody {
    #[serde(rename = "userCode", alias = "user_code")]
    user_code: String,
}

async fn decide(ctx: &Ctx, who: &Principal, mut req: Request, approve: bool) -> HandlerResult {
    let body: DecideBody = read_json(ctx, &mut req).await?;
    let code =
        normalize_user_code(&body.user_code).ok_or_else(|| ApiError::bad_request("invalid_user_code", "userCode looks like ABCD-EFGH"))?;
    let db = ctx.db()?;
    let now = ctx.now_ms();
    let row = device_codes::by_user_code(&db, &code)
        .await
        .or_internal("device lookup")?
        .ok_or_else(|| ApiError::not_found("No pending sign-in with that code."))?;
    let status = if approve { "approved" } else { "denied" };
    if !device_codes::decide(&db, &row.id, status, approve.then_some(who.user_id.as_str()), now).await.or_internal("device decide")? {
        return Err(ApiError::not_found("No pending sign-in with that code (it expired or was already decided)."));
    }
    json_response(200, &json!({"success": true, "status": status}))
}

/// `POST /api/auth/device/approve {userCode}` (signed in).
pub async fn approve(ctx: &Ctx, who: &Principal, req: Request) -> HandlerResult {
    decide(ctx, who, req, true).await
}

/// `POST /api/auth/device/deny {userCode}` (signed in).
pub async fn deny(ctx: &Ctx, who: &Principal, req: Request) -> HandlerResult {
    decide(ctx, who, req, false).await
}
