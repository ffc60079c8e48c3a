//! End-to-end tests against the Worker running in workerd (`wrangler dev
//! --local`) with real local D1, KV, Durable Objects, Queues and cron, and the
//! third-party services played by the fakes server. Started by scripts/e2e.sh.

// Shared by the three e2e binaries; each uses part of it.
#[allow(dead_code)]
mod common;

mod accounts;
mod auth;
mod billing;
mod jobs;
mod keys;
mod platform;
mod proxy;
mod stripe;
mod usage;
mod wallet_and_limits;
