//! Route handlers, thin: parse, call the logic, map the result.

pub mod accounts;
pub mod auth;
pub mod billing;
pub mod device;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod usage;
pub mod webhooks;
