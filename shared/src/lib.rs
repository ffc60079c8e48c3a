//! The platform-independent core of Dex Edge.
//!
//! Nothing here imports the Workers runtime, so all of it tests natively in
//! milliseconds. The Worker (`workers/edge`) parses and authorises requests,
//! calls into these modules and maps their results to responses.

pub mod accounts;
pub mod breaker;
pub mod crypto;
pub mod error;
pub mod jwt;
pub mod keys;
pub mod lease;
pub mod log;
pub mod models;
pub mod money;
pub mod openapi;
pub mod password;
pub mod ratelimit;
pub mod routes;
pub mod sessions;
pub mod stripe;
pub mod time;
pub mod translate;
pub mod wallet;
