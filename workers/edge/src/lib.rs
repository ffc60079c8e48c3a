//! The Dex Edge Worker: entry points for HTTP, queues and cron, and the
//! Durable Object classes. Handlers stay thin: they parse and authorise,
//! call into `dex-shared` / `dex-queues`, and map results to responses.

mod auth;
mod billing_events;
mod config;
mod cron;
mod durable;
mod edge;
mod handlers;
mod ids;
mod jobs;
mod logging;
mod meter;
mod providers;
mod proxy;
mod repositories;
mod router;

use worker::{event, Context, Env, MessageBatch, Request, Response, Result, ScheduleContext, ScheduledEvent};

pub use durable::limiter::Limiter;
pub use durable::wallet::Wallet;

#[event(start)]
fn start() {
    // Panics become a console error with a stack instead of an opaque trap.
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    Ok(router::handle(req, env, ctx).await)
}

#[event(queue)]
async fn queue(batch: MessageBatch<serde_json::Value>, env: Env, _ctx: Context) -> Result<()> {
    jobs::consume(batch, env).await;
    Ok(())
}

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    cron::run(&event.cron(), env).await;
}
