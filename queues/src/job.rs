//! The typed job messages. The JSON form is what travels on the queue.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Job {
    /// Deletes what has outlived its use: expired sessions, old webhook ids,
    /// old finished job rows.
    Sweep,
    /// Reads each OpenAI-compatible upstream's model list into the KV cache.
    RefreshModels,
    /// An account's prepaid balance fell below the low-balance threshold
    /// (enqueued once per crossing, by the settle that crossed it).
    LowBalance { account_id: String, balance_micros: i64 },
    /// A verified Stripe webhook event (its body is kept with the event id in
    /// `webhook_events`), applied off the webhook's response path.
    StripeEvent { event_id: String },
    /// Reports each metered account's overage since the last sync to Stripe.
    SyncUsage,
    /// A Poindexter plan started: provision the identity (mailbox, number, Signal).
    ProvisionIdentity { account_id: String, plan: String },
    /// A Poindexter plan ended: take the identity down.
    DeprovisionIdentity { account_id: String },
    /// A persona tier started: allocate its personas, domains and mailboxes.
    AllocatePersonas { account_id: String, tier: String },
}

impl Job {
    pub fn type_name(&self) -> &'static str {
        match self {
            Job::Sweep => "sweep",
            Job::RefreshModels => "refresh_models",
            Job::LowBalance { .. } => "low_balance",
            Job::StripeEvent { .. } => "stripe_event",
            Job::SyncUsage => "sync_usage",
            Job::ProvisionIdentity { .. } => "provision_identity",
            Job::DeprovisionIdentity { .. } => "deprovision_identity",
            Job::AllocatePersonas { .. } => "allocate_personas",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Cron,
    Admin,
    System,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cron => "cron",
            Trigger::Admin => "admin",
            Trigger::System => "system",
        }
    }
}

/// What is put on the queue: the job plus the id its history row is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnvelope {
    pub job_id: String,
    pub trigger: Trigger,
    pub enqueued_at_ms: i64,
    pub job: Job,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_tagged() {
        let env = JobEnvelope { job_id: "job_1".into(), trigger: Trigger::Admin, enqueued_at_ms: 5, job: Job::RefreshModels };
        let v = serde_json::to_value(&env).unwrap_or_default();
        assert_eq!(v["job"]["type"], "refresh_models");
        assert_eq!(v["trigger"], "admin");
        let back: Result<JobEnvelope, _> = serde_json::from_value(v);
        assert_eq!(back.ok(), Some(env));
    }

    #[test]
    fn unknown_type_is_refused() {
        let r: Result<Job, _> = serde_json::from_str(r#"{"type":"mine_bitcoin"}"#);
        assert!(r.is_err());
    }
}

#[cfg(test)]
mod stripe_event_wire {
    use super::*;

    #[test]
    fn an_event_survives_the_queue() {
        let env = JobEnvelope {
            job_id: "j".into(),
            trigger: Trigger::System,
            enqueued_at_ms: 1,
            job: Job::StripeEvent { event_id: "evt_1".into() },
        };
        let wire = serde_json::to_value(&env).unwrap_or_default();
        let back: JobEnvelope = serde_json::from_value(wire.clone()).unwrap_or_else(|e| panic!("{e}: {wire}"));
        assert_eq!(back, env, "{wire}");
    }
}
