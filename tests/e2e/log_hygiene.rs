//! Runs after the e2e suite (scripts/e2e.sh): the Worker's captured log holds
//! the requests just made, and none of the keys, tokens or passwords.

// Only the stack description is used here.
#[allow(dead_code)]
#[path = "common.rs"]
mod common;

#[test]
fn worker_log_never_holds_a_secret() {
    let stack = common::stack_json();
    let path = stack["worker_log"].as_str().unwrap_or_default();
    let log = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no worker log at {path}: {e}"));
    // The log was really captured: the suite's requests are in it.
    let request_lines = log.lines().filter(|l| l.contains("\"event\":\"http.request\"")).count();
    assert!(request_lines >= 50, "only {request_lines} request lines captured");
    assert!(log.contains("\"event\":\"job.completed\""));

    let secrets = [
        stack["operator"]["api_key"].as_str(),
        stack["demo"]["api_key"].as_str(),
        stack["operator"]["password"].as_str(),
        stack["demo"]["password"].as_str(),
        stack["bootstrap_token"].as_str(),
        Some("local-pepper-not-a-secret"),
        Some("sk-local-fake-openai"),
        Some("sk-or-local-fake"),
        Some("sk-or-prov-local-fake"),
        Some("sk-ant-local-fake"),
        Some("sk_test_local_fake"),
        stack["stripe_webhook_secret"].as_str(),
        Some("local-twilio-auth-token"),
        // What the tests sent as prompts.
        Some("count this stream of words please"),
        Some("hello claude"),
        Some("e2e-password-123"),
    ];
    for s in secrets.into_iter().flatten() {
        assert!(!log.contains(s), "the worker log contains a secret ({}…)", &s[..6.min(s.len())]);
    }
    // No key of ours at all (the suite minted many), no session or refresh
    // token, no device code, and no bearer material.
    assert!(!log.contains("pk_live_"), "an API key reached the log");
    assert!(!log.contains("eyJ"), "a JWT reached the log");
    assert!(!log.contains("rt_"), "a refresh token reached the log");
    assert!(!log.contains("dc_"), "a device code reached the log");
    assert!(!log.contains("sk-or-v1-"), "a per-account upstream key reached the log");
    assert!(!log.to_ascii_lowercase().contains("bearer "), "an Authorization header reached the log");
    // No e-mail address (PII) either.
    assert!(!log.contains("@e2e.test") && !log.contains("@dex.local"), "an e-mail address reached the log");
}
