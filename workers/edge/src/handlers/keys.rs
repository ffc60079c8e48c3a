use serde_json::json;

use crate::edge::{json_response, Ctx, HandlerResult, OrInternal};
use crate::repositories::api_keys::KeyContext;
use crate::repositories::{accounts, users};
use dex_shared::error::ApiError;

/// `GET /keys/validate` (Dexto CLI): reaching here means the key checked out.
pub fn validate(key: &KeyContext) -> HandlerResult {
    json_response(200, &json!({"valid": true, "keyId": key.key_id, "accountId": key.account_id}))
}

/// `GET /v1/me`: the calling key's user and account.
pub async fn me(ctx: &Ctx, key: &KeyContext) -> HandlerResult {
    let db = ctx.db()?;
    let user = users::get(&db, &key.user_id).await.or_internal("user lookup")?.ok_or_else(|| ApiError::unauthorized("Invalid API key."))?;
    let account = accounts::get(&db, &key.account_id)
        .await
        .or_internal("account lookup")?
        .ok_or_else(|| ApiError::unauthorized("Invalid API key."))?;
    json_response(
        200,
        &json!({
            "user": {"id": user.id, "account_id": user.account_id, "email": user.email, "role": user.role, "operator": user.is_operator == 1},
            "account": {"id": account.id, "name": account.name, "plan": account.plan, "status": account.status},
            "key": {"id": key.key_id, "name": key.key_name, "prefix": key.key_prefix},
        }),
    )
}
