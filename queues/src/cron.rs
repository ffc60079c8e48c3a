//! Which cron schedule starts which task. The strings must match
//! `[triggers] crons` in `wrangler.toml` (a test below reads it).

use crate::job::Job;

pub const EVERY_FIVE_MINUTES: &str = "*/5 * * * *";
pub const HOURLY: &str = "0 * * * *";
/// 20:00 UTC is 06:00 AEST, when the domain warm-up check runs.
pub const DAILY_WARMUP: &str = "0 20 * * *";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronTask {
    Sweep,
    HourlyUsageSync,
    DomainWarmupCheck,
}

impl CronTask {
    pub fn for_cron(expr: &str) -> Option<CronTask> {
        match expr.trim() {
            EVERY_FIVE_MINUTES => Some(CronTask::Sweep),
            HOURLY => Some(CronTask::HourlyUsageSync),
            DAILY_WARMUP => Some(CronTask::DomainWarmupCheck),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CronTask::Sweep => "sweep",
            CronTask::HourlyUsageSync => "hourly_usage_sync",
            CronTask::DomainWarmupCheck => "domain_warmup_check",
        }
    }

    /// The job run inline by the cron invocation, if any. The sweep is quick
    /// and local, so it runs at once and is recorded like any job.
    pub fn inline_job(self) -> Option<Job> {
        match self {
            CronTask::Sweep => Some(Job::Sweep),
            _ => None,
        }
    }

    /// Jobs the task puts on the queue, where they get retries and the
    /// dead-letter queue. The warm-up check joins these with the domain pool.
    pub fn enqueued_jobs(self) -> Vec<Job> {
        match self {
            CronTask::HourlyUsageSync => vec![Job::SyncUsage, Job::RefreshModels],
            CronTask::Sweep | CronTask::DomainWarmupCheck => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_schedule() {
        assert_eq!(CronTask::for_cron("*/5 * * * *"), Some(CronTask::Sweep));
        assert_eq!(CronTask::for_cron("0 * * * *"), Some(CronTask::HourlyUsageSync));
        assert_eq!(CronTask::for_cron("0 20 * * *"), Some(CronTask::DomainWarmupCheck));
        assert_eq!(CronTask::for_cron("1 2 3 4 5"), None);
    }

    #[test]
    fn wrangler_toml_declares_exactly_these_crons() {
        let toml = include_str!("../../wrangler.toml");
        let line = toml.lines().find(|l| l.trim_start().starts_with("crons")).unwrap_or("");
        for c in [EVERY_FIVE_MINUTES, HOURLY, DAILY_WARMUP] {
            assert!(line.contains(&format!("\"{c}\"")), "wrangler.toml crons lack {c}: {line}");
        }
        assert_eq!(line.matches('"').count(), 6, "unexpected extra cron in {line}");
    }
}
