//! `POST /webhooks/stripe`: verify the signature over the raw body, record
//! the event id (a repeat is acknowledged without effect), answer at once,
//! and apply the event from the queue.

use dex_queues::{Job, Trigger};
use dex_shared::error::ApiError;
use dex_shared::stripe::{parse_event, verify_signature};
use serde_json::json;
use worker::Request;

use crate::edge::{header, json_response, read_body, Ctx, HandlerResult, OrInternal};
use crate::jobs;
use crate::logging;
use crate::repositories::webhook_events;

const TOLERANCE_SECS: i64 = 300;
const MAX_EVENT_BYTES: u64 = 512 * 1024;

fn refused(reason: &str) -> ApiError {
    // Stripe shows the body in its dashboard; say why without echoing input.
    ApiError::bad_request("invalid_signature", format!("Webhook signature verification failed: {reason}."))
}

pub async fn stripe(ctx: &Ctx, mut req: Request) -> HandlerResult {
    let secret = ctx.config().get("STRIPE_WEBHOOK_SECRET").ok_or_else(|| {
        logging::emit(logging::error("config.missing_secret").field("name", "STRIPE_WEBHOOK_SECRET"));
        ApiError::unavailable("not_configured", "Webhooks are not configured.")
    })?;
    let raw = read_body(&mut req, MAX_EVENT_BYTES).await?;
    let signature = header(&req, "stripe-signature").unwrap_or_default();
    let now_secs = ctx.now_ms() / 1000;
    if let Err(e) = verify_signature(&signature, &raw, &secret, now_secs, TOLERANCE_SECS) {
        logging::emit(logging::warn("webhook.refused").field("provider", "stripe").field("reason", format!("{e:?}")));
        return Err(refused(&format!("{e:?}").to_ascii_lowercase()));
    }
    let event = parse_event(&raw).map_err(|_| ApiError::bad_request("invalid_event", "The body is not a Stripe event."))?;
    let db = ctx.db()?;
    let text = String::from_utf8_lossy(&raw);
    let fresh = webhook_events::record(&db, "stripe", &event.id, &event.type_, &text, ctx.now_ms()).await.or_internal("webhook record")?;
    if !fresh {
        logging::emit(logging::info("webhook.duplicate").field("provider", "stripe").field("event_id", event.id.as_str()));
        return json_response(200, &json!({"received": true, "duplicate": true}));
    }
    if let Err(e) = jobs::enqueue(&ctx.env, Job::StripeEvent { event_id: event.id.clone() }, Trigger::System).await {
        // Forget the id so Stripe's retry is processed; answer 5xx so it retries.
        let _ = webhook_events::forget(&db, "stripe", &event.id).await;
        logging::emit(logging::error("webhook.enqueue_failed").field("event_id", event.id.as_str()).field("detail", e.to_string()));
        return Err(ApiError::unavailable("queue_unavailable", "Could not accept the event; retry."));
    }
    logging::emit(
        logging::info("webhook.accepted")
            .field("provider", "stripe")
            .field("event_id", event.id.as_str())
            .field("type", event.type_.as_str()),
    );
    json_response(200, &json!({"received": true}))
}
