//! The one place every request passes: request id, CORS, routing (the table
//! is `dex_shared::routes::ROUTES`), access checks, errors, the access log.

use dex_shared::error::ApiError;
use dex_shared::ratelimit::Decision;
use dex_shared::routes::{match_route, Access, Params, RouteId, RouteMatch};
use worker::{Env, Request, Response};

use crate::auth;
use crate::auth::Principal;
use crate::edge::{anthropic_error_response, error_response, header, Ctx, HandlerResult};
use crate::handlers::{accounts, auth as auth_routes, billing, device, health, jobs, keys, usage, webhooks};
use crate::ids::request_id;
use crate::logging::{self, now_ms};
use crate::proxy::{self, Surface};

pub async fn handle(req: Request, env: Env, worker_ctx: worker::Context) -> Response {
    let started = now_ms();
    let ctx = Ctx { env, request_id: request_id(header(&req, "x-request-id")), worker_ctx };
    let method = req.method().to_string();
    let origin = header(&req, "origin");
    let allowed_origin = origin.filter(|o| ctx.config().cors_origins().iter().any(|a| a == o));

    let mut metered = false;
    let (mut resp, route_label, who) = if method == "OPTIONS" {
        (preflight(allowed_origin.is_some()), "OPTIONS *".to_string(), None)
    } else {
        let path = req.path();
        match match_route(&method, &path) {
            RouteMatch::Found(route, params) => {
                let label = format!("{} {}", route.method, route.path);
                metered = matches!(
                    route.id,
                    RouteId::ChatCompletions | RouteId::AiChat | RouteId::Completions | RouteId::Embeddings | RouteId::Messages
                );
                let (result, who) = dispatch(&ctx, req, route.id, route.access, &params).await;
                let resp =
                    result
                        .unwrap_or_else(|e| if route.id == RouteId::Messages { anthropic_error_response(&e) } else { error_response(&e) });
                (resp, label, who)
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
    if let Some(p) = who {
        line = line.field("account_id", p.account_id.as_str());
        if let Some(k) = p.key() {
            line = line.field("key_id", k.key_id.as_str());
        }
    }
    // A served AI request has its row in usage_ledger (request id, key,
    // model, status, latency): the access log keeps failures only, unless
    // ACCESS_LOG_PROXY=all. One console line per request is a measurable
    // part of a proxied request's CPU.
    let served = metered && resp.status_code() < 400;
    if !served || ctx.config().get("ACCESS_LOG_PROXY").as_deref() == Some("all") {
        logging::emit(line);
    }
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

pub fn with_rate_headers(resp: HandlerResult, d: &Decision) -> HandlerResult {
    let mut resp = resp?;
    let h = resp.headers_mut();
    let _ = h.set("x-ratelimit-limit-requests", &d.limit.to_string());
    let _ = h.set("x-ratelimit-remaining-requests", &d.remaining.to_string());
    let _ = h.set("x-ratelimit-reset-requests", &format!("{}ms", d.reset_ms));
    Ok(resp)
}

/// Checks access, then calls the route's handler. Every `RouteId` has an arm.
async fn dispatch(ctx: &Ctx, req: Request, id: RouteId, access: Access, params: &Params) -> (HandlerResult, Option<Principal>) {
    let who = match access {
        Access::Public => Ok(None),
        Access::BootstrapToken => auth::bootstrap_token(ctx, &req).map(|_| None),
        Access::ApiKey => auth::api_key(ctx, &req).await.map(|k| Some(Principal::from(k))),
        Access::Session => auth::session(ctx, &req).await.map(Some),
        Access::User => auth::user(ctx, &req).await.map(Some),
        Access::Operator => auth::operator(ctx, &req).await.map(Some),
    };
    let who = match who {
        Ok(w) => w,
        Err(e) => return (Err(e), None),
    };
    // Every request made with an API key draws from that key's bucket;
    // operators' keys (automation of this service itself) are exempt. The AI
    // proxy takes its request and token buckets together, itself.
    let proxied = matches!(id, RouteId::ChatCompletions | RouteId::AiChat | RouteId::Completions | RouteId::Embeddings | RouteId::Messages);
    let decision = match who.as_ref().filter(|p| !p.is_operator && !proxied).and_then(Principal::key) {
        Some(k) => match auth::rate_limit(ctx, k).await {
            Ok(d) => Some(d),
            Err(e) => return (Err(e), who),
        },
        None => None,
    };
    let result = match &who {
        Some(p) => route(ctx, req, id, params, Some(p)).await,
        None => route(ctx, req, id, params, None).await,
    };
    let result = match &decision {
        Some(d) => with_rate_headers(result, d),
        None => result,
    };
    (result, who)
}

async fn route(ctx: &Ctx, req: Request, id: RouteId, params: &Params, who: Option<&Principal>) -> HandlerResult {
    let who = || who.ok_or_else(|| ApiError::unauthorized("Missing credentials."));
    let id_param = || param(params, "id");
    match id {
        RouteId::Health => health::get(ctx).await,
        RouteId::OpenApi => health::openapi(),
        RouteId::Register => auth_routes::register(ctx, req).await,
        RouteId::Login => auth_routes::login(ctx, req).await,
        RouteId::Refresh | RouteId::PhoneRefresh => auth_routes::refresh(ctx, req).await,
        RouteId::Logout | RouteId::PhoneLogout => auth_routes::logout(ctx, req).await,
        RouteId::TokenFromKey => auth_routes::token_from_key(ctx, who()?).await,
        RouteId::PhoneSendCode => auth_routes::send_code(ctx, req).await,
        RouteId::PhoneVerifyCode => auth_routes::verify_code(ctx, req).await,
        RouteId::Me => auth_routes::me(ctx, who()?).await,
        RouteId::ApiKeysList => keys::v1_list(ctx, who()?).await,
        RouteId::ApiKeysCreate => keys::v1_create(ctx, who()?, req).await,
        RouteId::ApiKeysRevoke => keys::v1_revoke(ctx, who()?, id_param()?).await,
        RouteId::ApiKeysRotate => keys::v1_rotate(ctx, who()?, id_param()?).await,
        RouteId::DextoKeysList => keys::dexto_list(ctx, who()?).await,
        RouteId::DextoKeysCreate => keys::dexto_create(ctx, who()?, req).await,
        RouteId::DextoKeysDelete => keys::dexto_delete(ctx, who()?, id_param()?).await,
        RouteId::DextoKeysValidate | RouteId::KeysValidate => keys::validate(ctx, &req).await,
        RouteId::Provision | RouteId::KeysProvision => keys::provision(ctx, who()?, req).await,
        RouteId::KeysRotate => keys::rotate_presented(ctx, who()?).await,
        RouteId::KeysList => keys::list_compat(ctx, who()?).await,
        RouteId::DeviceStart => device::start(ctx, req).await,
        RouteId::DevicePoll => device::poll(ctx, req).await,
        RouteId::DeviceApprove => device::approve(ctx, who()?, req).await,
        RouteId::DeviceDeny => device::deny(ctx, who()?, req).await,
        RouteId::ChatCompletions | RouteId::AiChat => proxy::handle(ctx, who()?, req, Surface::ChatCompletions).await,
        RouteId::Completions => proxy::handle(ctx, who()?, req, Surface::Completions).await,
        RouteId::Embeddings => proxy::handle(ctx, who()?, req, Surface::Embeddings).await,
        RouteId::Messages => proxy::handle(ctx, who()?, req, Surface::Messages).await,
        RouteId::Models => proxy::list_models(ctx).await,
        RouteId::MeUsage => usage::mine(ctx, who()?, &req).await,
        RouteId::BillingBalance => usage::billing_balance(ctx, who()?).await,
        RouteId::AdminUsage => usage::admin(ctx, &req).await,
        RouteId::StripeCheckoutPack => billing::create_pack_session(ctx, who()?, req).await,
        RouteId::BillingCheckout => billing::create_credits_session(ctx, who()?, req).await,
        RouteId::BillingSubscribe => billing::subscribe(ctx, who()?, req).await,
        RouteId::BillingPortal => billing::portal(ctx, who()?).await,
        RouteId::BillingSubscription => billing::subscription(ctx, who()?).await,
        RouteId::StripeWebhook => webhooks::stripe(ctx, req).await,
        RouteId::AdminBootstrap => accounts::bootstrap(ctx, req).await,
        RouteId::AdminListUsers => accounts::list_users(ctx, &req).await,
        RouteId::AdminCreateAccount => accounts::create(ctx, req).await,
        RouteId::AdminGetAccount => accounts::get(ctx, id_param()?).await,
        RouteId::AdminSuspendAccount => accounts::set_status(ctx, id_param()?, req, true).await,
        RouteId::AdminReactivateAccount => accounts::set_status(ctx, id_param()?, req, false).await,
        RouteId::AdminCreditAccount => accounts::credit(ctx, id_param()?, req).await,
        RouteId::AdminListJobs => jobs::list(ctx, &req).await,
        RouteId::AdminEnqueueJob => jobs::enqueue(ctx, req).await,
        RouteId::AdminGetJob => jobs::get(ctx, id_param()?).await,
    }
}
