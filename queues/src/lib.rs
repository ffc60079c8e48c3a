//! Jobs: the messages on the `JOBS` queue, the code that runs them, how they
//! are retried, and which cron schedule starts which task.
//!
//! Handlers reach the platform only through [`ports::JobPorts`], which the
//! Worker implements over D1, KV and `Fetch`; here they test natively.

pub mod cron;
pub mod handlers;
pub mod job;
pub mod ports;
pub mod retry;

pub use handlers::run;
pub use job::{Job, JobEnvelope, Trigger};
pub use ports::{JobError, JobPorts};
