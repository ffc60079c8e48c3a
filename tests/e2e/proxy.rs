//! The AI proxy at the wire: validation, streaming without buffering,
//! failover, the circuit breaker, mid-stream failures. (The official SDKs
//! drive it in tests/sdk; usage numbers are checked in storage.rs.)

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::common::{answer, stack};

fn chat(model: &str, text: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_upstream_call() {
    let s = stack();
    let (_, key) = s.new_account("proxy-bad").await;
    let k = Some(key.as_str());
    let r = answer(s.http.post(s.url("/v1/chat/completions")).bearer_auth(&key).body("{nope").send().await.expect("sent")).await;
    r.assert_error(400, "invalid_json");
    s.post("/v1/chat/completions", k, json!({"messages": [{"role": "user", "content": "x"}]})).await.assert_error(400, "missing_model");
    s.post("/v1/chat/completions", k, json!({"model": "gpt-4o-mini"})).await.assert_error(400, "missing_messages");
    s.post("/v1/chat/completions", k, json!({"model": "gpt-4o-mini", "messages": []})).await.assert_error(400, "missing_messages");
    s.post("/v1/chat/completions", k, chat("gpt-99", "x")).await.assert_error(404, "model_not_found");
    s.post("/v1/chat/completions", k, json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}))
        .await
        .assert_error(400, "invalid_max_tokens");
    s.post("/v1/embeddings", k, json!({"model": "gpt-4o-mini", "input": "x"})).await.assert_error(400, "wrong_model_kind");
    let big = "x".repeat(5 * 1024 * 1024);
    let r =
        answer(s.http.post(s.url("/v1/chat/completions")).bearer_auth(&key).json(&chat("gpt-4o-mini", &big)).send().await.expect("sent"))
            .await;
    r.assert_error(413, "payload_too_large");
    // /v1/messages answers in Anthropic's shape.
    let m = s.post("/v1/messages", k, json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(m.status, 400, "{}", m.text);
    assert_eq!(m.body["type"], "error");
    assert_eq!(m.body["error"]["type"], "invalid_request_error");
    let m = s
        .http
        .post(s.url("/v1/messages"))
        .header("x-api-key", "pk_live_000000000000000000000000000000000")
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    let m = answer(m).await;
    assert_eq!((m.status, m.body["error"]["type"].as_str()), (401, Some("authentication_error")), "{}", m.text);
}

#[tokio::test]
async fn unknown_fields_pass_through_and_the_model_is_mapped() {
    let s = stack();
    let (_, key) = s.new_account("proxy-pass").await;
    let marker = format!("marker-{}", crate::common::unique());
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": marker}], "logit_bias": {"42": 1}, "x_custom": {"keep": true}});
    let r = s.post("/v1/chat/completions", Some(&key), body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("x-dexto-request-id").is_some());
    let seen = s.fakes_requests("openai", "/v1/chat/completions").await;
    let mine = seen.iter().find(|q| q["body"].as_str().is_some_and(|b| b.contains(&marker))).expect("reached the upstream");
    let sent: serde_json::Value = serde_json::from_str(mine["body"].as_str().unwrap_or("{}")).unwrap_or_default();
    assert_eq!(sent["x_custom"]["keep"], true);
    assert_eq!(sent["logit_bias"]["42"], 1);
    assert_eq!(mine["headers"]["authorization"], "Bearer sk-local-fake-openai", "the gateway's key, never the client's");
}

#[tokio::test]
async fn streaming_passes_chunks_through_as_they_arrive() {
    let s = stack();
    let (_, key) = s.new_account("proxy-stream").await;
    let marker = format!("slowstream {}", crate::common::unique());
    // The fake sends each SSE event 200 ms apart (for this request only).
    s.fakes_script(
        json!({"provider": "openai", "path": "/v1/chat/completions", "chunk_delay_ms": 200, "times": 1, "body_contains": marker}),
    )
    .await;
    let started = Instant::now();
    let resp = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": marker}]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap_or("").starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut first_at = None;
    let mut text = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        if first_at.is_none() && !chunk.is_empty() {
            first_at = Some(started.elapsed());
        }
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let last_at = started.elapsed();
    let first_at = first_at.expect("some bytes");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(last_at >= Duration::from_millis(1000), "the fake paced its events: {last_at:?}");
    assert!(first_at + Duration::from_millis(600) < last_at, "first bytes at {first_at:?}, last at {last_at:?}: the proxy buffered");
    assert!(!text.contains("\"usage\":{"), "usage was not asked for: {text}");
}

#[tokio::test]
async fn failover_to_the_next_upstream_before_the_first_byte() {
    let s = stack();
    let (_, key) = s.new_account("proxy-failover").await;
    let marker = format!("failover {}", crate::common::unique());
    // OpenAI fails once with 503: the request goes to OpenRouter instead.
    s.fakes_script(json!({"provider": "openai", "path": "/v1/chat/completions", "status": 503, "times": 1, "body_contains": marker})).await;
    let r = s.post("/v1/chat/completions", Some(&key), chat("gpt-4o-mini", &marker)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-dex-provider"), Some("openrouter"));
    let or = s.fakes_requests("openrouter", "/v1/chat/completions").await;
    let mine = or.iter().find(|q| q["body"].as_str().is_some_and(|b| b.contains(&marker))).expect("OpenRouter served it");
    assert!(mine["body"].as_str().is_some_and(|b| b.contains("openai/gpt-4o-mini")), "OpenRouter's name for the model");
}

#[tokio::test]
async fn all_upstreams_failing_is_a_clean_gateway_error() {
    let s = stack();
    let (_, key) = s.new_account("proxy-down").await;
    // Llama is only on OpenRouter; make it fail every time for this test.
    let tag = crate::common::unique();
    let down = format!("down {tag}");
    s.fakes_script(json!({"provider": "openrouter", "path": "/v1/chat/completions", "status": 500, "times": 3, "body_contains": down}))
        .await;
    let r = s.post("/v1/chat/completions", Some(&key), chat("meta-llama/llama-3.3-70b-instruct", &down)).await;
    r.assert_error(502, "upstream_error");
    let limited = format!("limited {tag}");
    s.fakes_script(json!({"provider": "openrouter", "path": "/v1/chat/completions", "status": 429, "headers": {"retry-after": "7"}, "times": 3, "body_contains": limited})).await;
    let r = s.post("/v1/chat/completions", Some(&key), chat("meta-llama/llama-3.3-70b-instruct", &limited)).await;
    r.assert_error(429, "upstream_rate_limited");
    assert_eq!(r.header("retry-after"), Some("7"));
    let long = format!("too long {tag}");
    s.fakes_script(json!({"provider": "openrouter", "path": "/v1/chat/completions", "status": 400, "body": {"error": {"message": "context too long", "type": "invalid_request_error"}}, "times": 1, "body_contains": long})).await;
    let r = s.post("/v1/chat/completions", Some(&key), chat("meta-llama/llama-3.3-70b-instruct", &long)).await;
    r.assert_error(400, "upstream_rejected");
    assert!(r.text.contains("context too long"));
}

#[tokio::test]
async fn mid_stream_upstream_death_ends_the_stream_and_is_not_retried() {
    let s = stack();
    let (_, key) = s.new_account("proxy-abort").await;
    let marker = format!("abort {}", crate::common::unique());
    s.fakes_script(json!({"provider": "anthropic", "path": "/v1/messages", "abort_after_chunks": 4, "times": 1, "body_contains": marker}))
        .await;
    let resp = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "claude-sonnet-4-5", "stream": true, "messages": [{"role": "user", "content": marker}]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let text = String::from_utf8_lossy(&resp.bytes().await.unwrap_or_default()).to_string();
    assert!(text.contains("chat.completion.chunk"), "the part that arrived was forwarded: {text}");
    // Not retried on another upstream once bytes had gone out.
    let or = s.fakes_requests("openrouter", "/v1/chat/completions").await;
    assert!(!or.iter().any(|q| q["body"].as_str().is_some_and(|b| b.contains(&marker))));
}

#[tokio::test]
async fn openrouter_calls_use_a_per_account_key_minted_once() {
    let s = stack();
    let (account, key) = s.new_account("proxy-orkey").await;
    let marker = format!("orkey {}", crate::common::unique());
    for i in 0..2 {
        let r = s.post("/v1/chat/completions", Some(&key), chat("meta-llama/llama-3.3-70b-instruct", &format!("{marker} {i}"))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(!r.text.contains("sk-or-v1-"), "never returned");
    }
    let minted: serde_json::Value =
        s.http.get(format!("{}/__fakes/openrouter/keys", s.fakes)).send().await.expect("fakes").json().await.unwrap_or_default();
    let mine: Vec<_> = minted["keys"]
        .as_array()
        .map(|k| k.iter().filter(|k| k["name"] == format!("dex-edge {account}")).cloned().collect())
        .unwrap_or_default();
    assert_eq!(mine.len(), 1, "one key per account, minted on first use: {minted}");
    assert_eq!(mine[0]["limit"], 25.0);
    assert_eq!(mine[0]["include_byok_in_limit"], true);
    let full = mine[0]["key"].as_str().unwrap_or_default();
    let reqs = s.fakes_requests("openrouter", "/v1/chat/completions").await;
    let used: Vec<_> = reqs.iter().filter(|q| q["body"].as_str().is_some_and(|b| b.contains(&marker))).collect();
    assert_eq!(used.len(), 2);
    assert!(used.iter().all(|q| q["headers"]["authorization"] == format!("Bearer {full}")), "the account's own key upstream");
    // The provisioning call used the provisioning key.
    let prov = s.fakes_requests("openrouter", "/v1/keys").await;
    assert!(prov.iter().any(|q| q["headers"]["authorization"] == "Bearer sk-or-prov-local-fake"));
}

#[tokio::test]
async fn legacy_completions_and_the_ai_chat_alias() {
    let s = stack();
    let (_, key) = s.new_account("proxy-legacy").await;
    let c = s.post("/v1/completions", Some(&key), json!({"model": "gpt-4o-mini", "prompt": "Say hi", "max_tokens": 5})).await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.body["object"], "text_completion");
    assert!(c.body["usage"]["total_tokens"].as_u64().is_some_and(|t| t > 0));
    s.post("/v1/completions", Some(&key), json!({"model": "gpt-4o-mini"})).await.assert_error(400, "missing_prompt");
    let a = s.post("/v1/ai/chat", Some(&key), chat("gpt-4o-mini", "alias")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["object"], "chat.completion");
    assert_eq!(a.body["model"], "gpt-4o-mini");
    // Public model list with prices, cacheable.
    let m = s.get("/v1/models", None).await;
    assert_eq!(m.status, 200);
    assert_eq!(m.header("cache-control"), Some("public, max-age=3600"));
    let gpt = m.body["data"].as_array().and_then(|d| d.iter().find(|x| x["id"] == "gpt-4o-mini").cloned()).expect("listed");
    assert_eq!(gpt["pricing"]["input_per_million_usd"], "0.150000");
}
