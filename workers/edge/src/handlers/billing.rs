//! Payments: credit packs and subscriptions through Stripe Checkout, the
//! billing portal, and the subscription as we know it.

use dex_shared::error::ApiError;
use dex_shared::money::micros_to_usd_string;
use dex_shared::stripe::{credit_pack_micros, SubscriptionPlan, CREDIT_PACKS_USD};
use dex_shared::time::rfc3339;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::Request;

use crate::auth::Principal;
use crate::edge::{json_response, read_json, Ctx, HandlerResult, OrInternal};
use crate::providers::stripe::Stripe;
use crate::repositories::{billing as repo, users};

fn app_url(ctx: &Ctx) -> String {
    ctx.config().base_url("APP_BASE_URL").unwrap_or_else(|| "https://dexto.ai".into())
}

/// The account's Stripe customer, created once (idempotent by account id).
async fn ensure_customer(ctx: &Ctx, stripe: &Stripe, who: &Principal) -> Result<String, ApiError> {
    let db = ctx.db()?;
    if let Some(c) = repo::stripe_customer(&db, &who.account_id).await.or_internal("customer lookup")? {
        return Ok(c);
    }
    let email = users::get(&db, &who.user_id).await.or_internal("user")?.and_then(|u| u.email);
    let mut params = json!({"metadata": {"account_id": who.account_id}});
    if let Some(e) = email {
        params["email"] = json!(e);
    }
    let customer = stripe.post("/v1/customers", &params, &format!("customer-{}", who.account_id)).await.map_err(|f| f.error)?;
    let id = customer["id"].as_str().ok_or_else(|| ApiError::upstream(502, "Stripe answered without a customer id."))?.to_string();
    repo::set_stripe_customer(&db, &who.account_id, &id, ctx.now_ms()).await.or_internal("store customer")?;
    // Another request may have stored one first; use whatever is stored.
    Ok(repo::stripe_customer(&db, &who.account_id).await.or_internal("customer lookup")?.unwrap_or(id))
}

fn checkout_urls(ctx: &Ctx, return_url: Option<&str>) -> Result<(String, String), ApiError> {
    let base = match return_url {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => u.to_string(),
        Some(_) => return Err(ApiError::bad_request("invalid_return_url", "return_url must be an http(s) URL")),
        None => format!("{}/dashboard/settings/billing", app_url(ctx)),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok((format!("{base}{sep}checkout=success&session_id={{CHECKOUT_SESSION_ID}}"), format!("{base}{sep}checkout=cancelled")))
}

/// One Checkout Session for credits, recorded as a pending transaction.
async fn credit_checkout(ctx: &Ctx, who: &Principal, micros: i64, return_url: Option<&str>) -> Result<(String, String), ApiError> {
    let stripe = Stripe::from_config(&ctx.config())?;
    let customer = ensure_customer(ctx, &stripe, who).await?;
    let (success, cancel) = checkout_urls(ctx, return_url)?;
    let cents = micros / 10_000;
    let params = json!({
        "mode": "payment",
        "customer": customer,
        "client_reference_id": who.account_id,
        "success_url": success,
        "cancel_url": cancel,
        "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": cents, "product_data": {"name": format!("${} Dexto credits", micros_to_usd_string(micros).trim_end_matches('0').trim_end_matches('.'))}}}],
        "metadata": {"account_id": who.account_id, "kind": "credit_pack", "credit_micros": micros.to_string()},
    });
    let session = stripe.post("/v1/checkout/sessions", &params, &format!("checkout-{}", ctx.request_id)).await.map_err(|f| f.error)?;
    let (Some(id), Some(url)) = (session["id"].as_str(), session["url"].as_str()) else {
        return Err(ApiError::upstream(502, "Stripe answered without a session."));
    };
    repo::insert_transaction(&ctx.db()?, id, &who.account_id, "credit_pack", micros, None, ctx.now_ms())
        .await
        .or_internal("transaction")?;
    Ok((id.to_string(), url.to_string()))
}

#[derive(Deserialize)]
struct PackBody {
    pack: Value,
}

/// `POST /api/stripe/create-checkout-session {"pack": 5|10|25|50|100}`.
pub async fn create_pack_session(ctx: &Ctx, who: &Principal, mut req: Request) -> HandlerResult {
    let body: PackBody = read_json(ctx, &mut req).await?;
    let usd = body.pack.as_i64().or_else(|| body.pack.as_str().and_then(|s| s.trim().trim_start_matches('$').parse().ok()));
    let micros = usd.and_then(credit_pack_micros).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_pack",
            format!("pack must be one of {}", CREDIT_PACKS_USD.iter().map(|p| format!("${p}")).collect::<Vec<_>>().join(", ")),
        )
    })?;
    let (id, url) = credit_checkout(ctx, who, micros, None).await?;
    json_response(200, &json!({"sessionUrl": url, "sessionId": id}))
}

#[derive(Deserialize)]
struct CheckoutBody {
    credits_usd: Value,
    #[serde(default)]
    return_url: Option<String>,
}

/// `POST /api/billing/checkout-session {"credits_usd","return_url"}` (dexto billing).
pub async fn create_credits_session(ctx: &Ctx, who: &Principal, mut req: Request) -> HandlerResult {
    let body: CheckoutBody = read_json(ctx, &mut req).await?;
    let micros = dex_shared::money::usd_json_to_micros(&body.credits_usd)
        .filter(|m| (5_000_000..=1_000_000_000).contains(m) && m % 10_000 == 0)
        .ok_or_else(|| ApiError::bad_request("invalid_amount", "credits_usd must be between 5 and 1000 dollars, in whole cents"))?;
    let (id, url) = credit_checkout(ctx, who, micros, body.return_url.as_deref()).await?;
    json_response(200, &json!({"checkout_url": url, "checkout_session_id": id}))
}

#[derive(Deserialize)]
struct SubscribeBody {
    plan: String,
    #[serde(default)]
    return_url: Option<String>,
}

/// `POST /v1/billing/subscribe {"plan"}` → a Checkout URL for the plan.
pub async fn subscribe(ctx: &Ctx, who: &Principal, mut req: Request) -> HandlerResult {
    let body: SubscribeBody = read_json(ctx, &mut req).await?;
    let plan = SubscriptionPlan::from_str(&body.plan)
        .ok_or_else(|| ApiError::bad_request("invalid_plan", "plan must be one of basic, pro, ignition, velocity, dominance"))?;
    let stripe = Stripe::from_config(&ctx.config())?;
    let customer = ensure_customer(ctx, &stripe, who).await?;
    let (success, cancel) = checkout_urls(ctx, body.return_url.as_deref())?;
    let params = json!({
        "mode": "subscription",
        "customer": customer,
        "client_reference_id": who.account_id,
        "success_url": success,
        "cancel_url": cancel,
        "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": plan.monthly_price_cents(), "recurring": {"interval": "month"}, "product_data": {"name": format!("Dex {}", plan.as_str())}}}],
        "metadata": {"account_id": who.account_id, "kind": "subscription", "plan": plan.as_str()},
        "subscription_data": {"metadata": {"account_id": who.account_id, "plan": plan.as_str()}},
    });
    let session = stripe.post("/v1/checkout/sessions", &params, &format!("subscribe-{}", ctx.request_id)).await.map_err(|f| f.error)?;
    let (Some(id), Some(url)) = (session["id"].as_str(), session["url"].as_str()) else {
        return Err(ApiError::upstream(502, "Stripe answered without a session."));
    };
    repo::insert_transaction(&ctx.db()?, id, &who.account_id, "subscription", 0, Some(plan.as_str()), ctx.now_ms())
        .await
        .or_internal("transaction")?;
    json_response(200, &json!({"checkout_url": url, "checkout_session_id": id}))
}

/// `POST /v1/billing/portal` → a Stripe billing portal URL.
pub async fn portal(ctx: &Ctx, who: &Principal) -> HandlerResult {
    let stripe = Stripe::from_config(&ctx.config())?;
    let customer = ensure_customer(ctx, &stripe, who).await?;
    let params = json!({"customer": customer, "return_url": format!("{}/dashboard/settings/billing", app_url(ctx))});
    let s = stripe.post("/v1/billing_portal/sessions", &params, &format!("portal-{}", ctx.request_id)).await.map_err(|f| f.error)?;
    let url = s["url"].as_str().ok_or_else(|| ApiError::upstream(502, "Stripe answered without a portal URL."))?;
    json_response(200, &json!({"url": url}))
}

/// `GET /v1/billing/subscription`.
pub async fn subscription(ctx: &Ctx, who: &Principal) -> HandlerResult {
    let db = ctx.db()?;
    let account = crate::repositories::accounts::get(&db, &who.account_id)
        .await
        .or_internal("account")?
        .ok_or_else(|| ApiError::unauthorized("Invalid credentials."))?;
    let sub = repo::subscription(&db, &who.account_id).await.or_internal("subscription")?;
    let body = match sub {
        Some(s) => json!({
            "plan": account.plan, "status": s.status, "account_status": account.status,
            "stripe_subscription_id": s.stripe_subscription_id,
            "current_period_start": s.current_period_start.map(|t| rfc3339(t * 1000)),
            "current_period_end": s.current_period_end.map(|t| rfc3339(t * 1000)),
        }),
        None => json!({"plan": account.plan, "status": "none", "account_status": account.status}),
    };
    json_response(200, &body)
}
