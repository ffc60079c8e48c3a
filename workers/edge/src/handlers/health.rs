use dex_shared::openapi::OPENAPI_JSON;
use serde_json::json;
use worker::Response;

use crate::edge::{json_response, Ctx, HandlerResult, OrInternal};
use crate::repositories::accounts;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Liveness, version and whether D1 answers. 503 when it does not, so load
/// balancers and monitors see the degradation.
pub async fn get(ctx: &Ctx) -> HandlerResult {
    let d1_ok = match ctx.db() {
        Ok(db) => accounts::ping(&db).await.is_ok(),
        Err(_) => false,
    };
    let body = json!({
        "status": if d1_ok { "ok" } else { "degraded" },
        "version": VERSION,
        "d1": if d1_ok { "ok" } else { "unreachable" },
    });
    json_response(if d1_ok { 200 } else { 503 }, &body)
}

pub fn openapi() -> HandlerResult {
    let resp = Response::ok(OPENAPI_JSON).or_internal("openapi")?;
    resp.headers().set("content-type", "application/json").or_internal("openapi header")?;
    resp.headers().set("cache-control", "public, max-age=3600").or_internal("openapi header")?;
    Ok(resp)
}
