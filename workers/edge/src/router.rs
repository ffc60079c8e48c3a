//! The one place every request passes: request id, CORS, routing (the table
//! is `dex_shared::routes::ROUTES`), access checks, errors, the access log.

use dex_shared::error::ApiError;
use dex_shared::ratelimit::Decision;
use dex_shared::routes::{match_route, Access, Params, RouteId, RouteMatch};
use worker::{Env, Request, Response};

use crate::auth;
use crate::edge::{error_response, header, Ctx, HandlerResult};
use crate::handlers::{accounts, health, jobs, keys};
use crate::ids::request_id;
use crate::logging::{self, now_ms};
use crate::repositories::api_keys::KeyContext;

pub async fn handle(req: Request, env: Env) -> Response {
    let started = now_ms();
    let ctx = Ctx { env, request_id: request_id(header(&req, "x-request-id")) };
    let method = req.method().to_string();
    let origin = header(&req, "origin");
    let allowed_origin = origin.filter(|o| ctx.config().cors_origins().iter().any(|a| a == o));

    let (mut resp, route_label, who) = if method == "OPTIONS" {
        (preflight(allowed_origin.is_some()), "OPTIONS *".to_string(), None)
    } else {
        let path = req.path();
        match match_route(&method, &path) {
            RouteMatch::Found(route, params) => {
                let label = format!("{} {}", route.method, route.path);
                let (result, who) = dispatch(&ctx, req, route.id, route.access, &params).await;
                (result.unwrap_or_else(|e| error_response(&e)), label, who)
            }
            RouteMatch::MethodNotAllowed(allowed) => {
                let r = error_response(&ApiError::method_not_allowed(&method, &path, &allowed));
                let _ = r.headers().set("allow", &allowed.join(", "));
                (r, "405".to_string(), None)
            }
            RouteMatch::NotFound => {
                (error_response(&ApiError::not_found(format!("No route for {method} {path}."))), "404".to_string(), None)
            }
        }
    };

    let headers = resp.headers_mut();
    let _ = headers.set("x-request-id", &ctx.request_id);
    if let Some(o) = &allowed_origin {
        let _ = headers.set("access-control-allow-origin", o);
        let _ = headers.set("access-control-expose-headers", EXPOSED_HEADERS);
        let _ = headers.append("vary", "Origin");
    }
    let mut line = logging::info("http.request")
        .field("request_id", ctx.request_id.as_str())
        .field("route", route_label)
        .field("status", resp.status_code())
        .field("duration_ms", now_ms() - started);
    if let Some(k) = who {
        line = line.field("key_id", k.key_id).field("account_id", k.account_id);
    }
    logging::emit(line);
    resp
}

const EXPOSED_HEADERS: &str =
    "x-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests";

/// Browsers' CORS preflight. Token auth only (no cookies), so credentials are
/// never allowed; an origin off the allow-list gets no CORS headers at all.
fn preflight(origin_allowed: bool) -> Response {
    let resp = Response::empty().map(|r| r.with_status(204)).unwrap_or_else(|_| Response::builder().with_status(204).empty());
    if origin_allowed {
        let h = resp.headers();
        let _ = h.set("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        let _ = h.set(
            "access-control-allow-headers",
            "authorization, content-type, x-api-key, x-request-id, anthropic-version, idempotency-key",
        );
        let _ = h.set("access-control-max-age", "86400");
    }
    resp
}

fn param<'p>(params: &'p Params, name: &str) -> Result<&'p str, ApiError> {
    params.get(name).ok_or_else(|| ApiError::not_found("Missing path parameter."))
}

fn with_rate_headers(resp: HandlerResult, d: &Decision) -> HandlerResult {
    let mut resp = resp?;
    let h = resp.headers_mut();
    let _ = h.set("x-ratelimit-limit-requests", &d.limit.to_string());
    let _ = h.set("x-ratelimit-remaining-requests", &d.remaining.to_string());
    let _ = h.set("x-ratelimit-reset-requests", &format!("{}ms", d.reset_ms));
    Ok(resp)
}

/// Checks access, then calls the route's handler. Every `RouteId` has an arm.
async fn dispatch(ctx: &Ctx, req: Request, id: RouteId, access: Access, params: &Params) -> (HandlerResult, Option<KeyContext>) {
    let mut decision = None;
    let key = match access {
        Access::Public => None,
        Access::BootstrapToken => match auth::bootstrap_token(ctx, &req) {
            Ok(()) => None,
            Err(e) => return (Err(e), None),
        },
        Access::ApiKey => match auth::api_key(ctx, &req).await {
            Ok(k) => match auth::rate_limit(ctx, &k).await {
                Ok(d) => {
                    decision = Some(d);
                    Some(k)
                }
                Err(e) => return (Err(e), Some(k)),
            },
            Err(e) => return (Err(e), None),
        },
        Access::Operator => match auth::operator(ctx, &req).await {
            Ok(k) => Some(k),
            Err(e) => return (Err(e), None),
        },
    };
    let result = route(ctx, req, id, params, key.as_ref()).await;
    let result = match &decision {
        Some(d) => with_rate_headers(result, d),
        None => result,
    };
    (result, key)
}

async fn route(ctx: &Ctx, req: Request, id: RouteId, params: &Params, key: Option<&KeyContext>) -> HandlerResult {
    let key = || key.ok_or_else(|| ApiError::unauthorized("Missing API key."));
    match id {
        RouteId::Health => health::get(ctx).await,
        RouteId::OpenApi => health::openapi(),
        RouteId::KeysValidate => keys::validate(key()?),
        RouteId::Me => keys::me(ctx, key()?).await,
        RouteId::AdminBootstrap => accounts::bootstrap(ctx, req).await,
        RouteId::AdminCreateAccount => accounts::create(ctx, req).await,
        RouteId::AdminGetAccount => accounts::get(ctx, param(params, "id")?).await,
        RouteId::AdminCreditAccount => accounts::credit(ctx, param(params, "id")?, req).await,
        RouteId::AdminListJobs => jobs::list(ctx, &req).await,
        RouteId::AdminEnqueueJob => jobs::enqueue(ctx, req).await,
        RouteId::AdminGetJob => jobs::get(ctx, param(params, "id")?).await,
    }
}
