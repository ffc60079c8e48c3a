//! Self-tests: a real fakes server on a free port, driven over HTTP.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use super::client::{self, parse_sse, RecordedRequests, ScriptSpec, SseEvent};
use super::{spawn, FakesConfig, RunningFakes};

const CHAT: &str = "/openai/v1/chat/completions";

async fn start() -> RunningFakes {
    spawn(FakesConfig { log_requests: false }).await.expect("start fakes")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}

async fn post_authed(fakes: &RunningFakes, path: &str, body: Value) -> reqwest::Response {
    http().post(fakes.url(path)).bearer_auth("sk-test").json(&body).send().await.expect("send")
}

async fn script(fakes: &RunningFakes, spec: ScriptSpec) {
    let resp = http().post(client::script_url(&fakes.url)).json(&spec.to_json()).send().await.expect("script");
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
}

async fn recorded(fakes: &RunningFakes, provider: Option<&str>, path: Option<&str>) -> RecordedRequests {
    http().get(client::requests_url(&fakes.url, provider, path)).send().await.expect("requests").json().await.expect("requests json")
}

/// Reads a streamed body to its end: (text so far, whether it failed).
async fn read_body(resp: reqwest::Response) -> (String, bool) {
    let mut stream = resp.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => bytes.extend_from_slice(&b),
            Err(_) => return (String::from_utf8_lossy(&bytes).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&bytes).into_owned(), false)
}

fn chat_body(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": text},
    ]})
}

fn stream_body(text: &str, include_usage: bool) -> Value {
    let mut body = chat_body(text);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Concatenated `delta.content` of chat chunks.
fn streamed_text(events: &[SseEvent]) -> String {
    events.iter().filter_map(SseEvent::json).filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn health_and_unknown_top_level() {
    let fakes = start().await;
    let resp = http().get(client::health_url(&fakes.url)).send().await.expect("send");
    assert_eq!(resp.json::<Value>().await.expect("json"), json!({"ok": true}));
    let resp = http().get(fakes.url("/nope")).send().await.expect("send");
    assert_eq!(resp.status(), 404);
    assert!(recorded(&fakes, None, None).await.requests.is_empty());
}

#[tokio::test]
async fn chat_completion_shape_and_usage() {
    let fakes = start().await;
    let text = "What is the weather like in Lisbon today, and tomorrow?";
    let resp = post_authed(&fakes, CHAT, chat_body(text)).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers().get("x-request-id").cloned();
    assert_eq!(request_id.as_ref().and_then(|v| v.to_str().ok()), Some("req_fake_1"));
    let v: Value = resp.json().await.expect("json");
    let reply = client::openai::reply_text(text);
    assert!(reply.ends_with("in Lisbon today"), "{reply}");
    assert_eq!(v["id"], "chatcmpl-fake-1");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert!(v["created"].as_u64().is_some());
    assert!(v["system_fingerprint"].is_string());
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], reply.as_str());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let prompt = (9u64.div_ceil(4) + 3) + (55u64.div_ceil(4) + 3);
    let completion = client::openai::tokens_for(&reply);
    assert_eq!(
        v["usage"],
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
        })
    );
}

#[tokio::test]
async fn chat_max_tokens_truncates_with_length() {
    let fakes = start().await;
    let mut body = chat_body("hi");
    body["max_tokens"] = json!(3);
    let v: Value = post_authed(&fakes, CHAT, body).await.json().await.expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from t");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let mut body = chat_body("hi");
    body["max_completion_tokens"] = json!(1000);
    let v: Value = post_authed(&fakes, CHAT, body).await.json().await.expect("json");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn chat_tool_call_plain_and_streamed() {
    let fakes = start().await;
    let tools = json!([{"type": "function", "function": {"name": "web_search", "parameters": {}}}]);
    let mut body = chat_body("Please use a TOOL for this");
    body["tools"] = tools.clone();
    let v: Value = post_authed(&fakes, CHAT, body.clone()).await.json().await.expect("json");
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["content"], Value::Null);
    assert_eq!(
        msg["tool_calls"],
        json!([{"id": "call_fake_1", "type": "function",
                "function": {"name": "web_search", "arguments": "{\"query\":\"fake\"}"}}])
    );

    body["stream"] = json!(true);
    let (text, failed) = read_body(post_authed(&fakes, CHAT, body).await).await;
    assert!(!failed);
    let events = parse_sse(&text);
    assert_eq!(events.last(), Some(&SseEvent::Done));
    let chunks: Vec<Value> = events.iter().filter_map(SseEvent::json).collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["tool_calls"][0]["id"], "call_fake_1");
    assert_eq!(first["tool_calls"][0]["function"]["name"], "web_search");
    let args: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()).collect();
    assert_eq!(args, client::openai::TOOL_ARGUMENTS);
    assert_eq!(chunks.last().expect("chunks")["choices"][0]["finish_reason"], "tool_calls");

    // Without tools, "tool" in the text is just text.
    let v: Value = post_authed(&fakes, CHAT, chat_body("use a tool")).await.json().await.expect("json");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn stream_with_include_usage() {
    let fakes = start().await;
    let resp = post_authed(&fakes, CHAT, stream_body("Hello streaming world", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let (text, failed) = read_body(resp).await;
    assert!(!failed);
    let events = parse_sse(&text);
    assert_eq!(events.last(), Some(&SseEvent::Done));
    let chunks: Vec<Value> = events.iter().filter_map(SseEvent::json).collect();
    assert_eq!(chunks.len() + 1, events.len(), "only the last event is [DONE]");
    let (usage_chunk, rest) = chunks.split_last().expect("chunks");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["object"], "chat.completion.chunk");
    let reply = client::openai::reply_text("Hello streaming world");
    assert_eq!(usage_chunk["usage"]["completion_tokens"], client::openai::tokens_for(&reply));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], (3 + 3) + (6 + 3));
    for c in rest {
        assert_eq!(c["usage"], Value::Null);
        assert!(c.as_object().expect("object").contains_key("usage"));
        assert_eq!(c["id"], "chatcmpl-fake-1");
    }
    assert_eq!(rest[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let finish = rest.last().expect("finish chunk");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(streamed_text(&events), reply);
    assert!(rest[1..rest.len() - 1].iter().all(|c| {
        c["choices"][0]["delta"]["content"].as_str().is_some_and(|s| s.chars().count() <= client::openai::STREAM_CHUNK_CHARS)
    }));
}

#[tokio::test]
async fn stream_without_include_usage() {
    let fakes = start().await;
    let (text, failed) = read_body(post_authed(&fakes, CHAT, stream_body("No usage please", false)).await).await;
    assert!(!failed);
    let events = parse_sse(&text);
    assert_eq!(events.last(), Some(&SseEvent::Done));
    let chunks: Vec<Value> = events.iter().filter_map(SseEvent::json).collect();
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert!(chunks.iter().all(|c| c["choices"].as_array().is_some_and(|a| a.len() == 1)));
    assert_eq!(streamed_text(&events), client::openai::reply_text("No usage please"));
}

#[tokio::test]
async fn scripted_omit_usage() {
    let fakes = start().await;
    script(&fakes, ScriptSpec::new("openai", "/v1/chat/completions").omit_usage()).await;
    let (text, _) = read_body(post_authed(&fakes, CHAT, stream_body("x", true)).await).await;
    let events = parse_sse(&text);
    assert_eq!(events.last(), Some(&SseEvent::Done));
    assert!(events.iter().filter_map(SseEvent::json).all(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty())));
}

#[tokio::test]
async fn recording_and_filters() {
    let fakes = start().await;
    post_authed(&fakes, CHAT, chat_body("one")).await;
    let resp = http().get(fakes.url("/openrouter/api/v1/models?limit=2")).bearer_auth("sk-or").send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let models: Value = resp.json().await.expect("json");
    assert_eq!(models["object"], "list");
    assert!(models["data"].as_array().is_some_and(|d| d.len() >= 4));
    post_authed(&fakes, "/openrouter/api/v1/chat/completions", chat_body("two")).await;
    // Bearer auth is not Anthropic's: its 401, still recorded.
    let resp = post_authed(&fakes, "/anthropic/v1/messages", json!({"a": 1})).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}})
    );
    let resp = post_authed(&fakes, "/openai/v1/xyz", json!({})).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": {"message": "Unknown request URL: POST /v1/xyz",
                         "type": "invalid_request_error", "param": null, "code": "unknown_url"}})
    );

    let all = recorded(&fakes, None, None).await.requests;
    assert_eq!(all.len(), 5);
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let first = &all[0];
    assert_eq!((first.provider.as_str(), first.method.as_str()), ("openai", "POST"));
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(first.json_body().expect("json body")["messages"][1]["content"], "one");
    assert!(first.received_at_ms > 0);
    let models_req = &all[1];
    assert_eq!(models_req.provider, "openrouter");
    assert_eq!(models_req.path, "/v1/models");
    assert_eq!(models_req.query, "limit=2");
    assert_eq!(models_req.full_path, "/openrouter/api/v1/models");
    assert_eq!(all[3].provider, "anthropic");
    assert_eq!(all[4].path, "/v1/xyz");

    let chats = recorded(&fakes, None, Some("/v1/chat/completions")).await.requests;
    assert_eq!(chats.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
    let or_chats = recorded(&fakes, Some("openrouter"), Some("/v1/chat/completions")).await.requests;
    assert_eq!(or_chats.len(), 1);
    assert_eq!(or_chats[0].seq, 3);

    let resp = http().delete(client::requests_url(&fakes.url, None, None)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert!(recorded(&fakes, None, None).await.requests.is_empty());
}

#[tokio::test]
async fn scripted_500_once_then_normal() {
    let fakes = start().await;
    script(&fakes, ScriptSpec::new("openai", "/v1/chat/completions").status(500)).await;
    let resp = post_authed(&fakes, CHAT, chat_body("a")).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("req_fake_1"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "server_error");
    assert_eq!(v["error"]["param"], Value::Null);
    let resp = post_authed(&fakes, CHAT, chat_body("a")).await;
    assert_eq!(resp.status(), 200);
    // Both were recorded.
    assert_eq!(recorded(&fakes, Some("openai"), None).await.requests.len(), 2);
    let list: client::ScriptList = http().get(client::script_url(&fakes.url)).send().await.expect("send").json().await.expect("json");
    assert!(list.scripts.is_empty());
}

#[tokio::test]
async fn scripted_429_with_headers_fifo_and_custom_body() {
    let fakes = start().await;
    script(&fakes, ScriptSpec::new("openrouter", "/v1/chat/completions").status(429).header("retry-after", "2")).await;
    script(
        &fakes,
        ScriptSpec::new("openrouter", "/v1/chat/completions").status(502).body(json!({"error": {"message": "upstream", "code": 502}})),
    )
    .await;
    let path = "/openrouter/api/v1/chat/completions";
    let resp = post_authed(&fakes, path, chat_body("a")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let resp = post_authed(&fakes, path, chat_body("a")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["message"], "upstream");
    assert_eq!(post_authed(&fakes, path, chat_body("a")).await.status(), 200);

    // Unlimited until cleared.
    script(&fakes, ScriptSpec::new("openai", "/v1/embeddings").status(401).forever()).await;
    for _ in 0..3 {
        let resp = post_authed(&fakes, "/openai/v1/embeddings", json!({"model": "m", "input": "x"})).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "invalid_api_key");
    }
    http().delete(client::script_url(&fakes.url)).send().await.expect("send");
    let resp = post_authed(&fakes, "/openai/v1/embeddings", json!({"model": "m", "input": "x"})).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn invalid_script_is_rejected() {
    let fakes = start().await;
    let resp = http().post(client::script_url(&fakes.url)).json(&json!({"provider": "nope", "path": "/x"})).send().await.expect("send");
    assert_eq!(resp.status(), 400);
    let resp = http().post(client::script_url(&fakes.url)).body("{not json").send().await.expect("send");
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn abort_after_chunks_truncates_stream() {
    let fakes = start().await;
    script(&fakes, ScriptSpec::new("openai", "/v1/chat/completions").abort_after_chunks(2)).await;
    let resp = post_authed(&fakes, CHAT, stream_body("Cut me off somewhere", true)).await;
    assert_eq!(resp.status(), 200);
    let (text, failed) = read_body(resp).await;
    assert!(failed, "the body must end in an error, got a clean end: {text:?}");
    assert!(!text.contains("[DONE]"));
    let events = parse_sse(&text);
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.json().is_some()));

    // The next request is normal again.
    let (text, failed) = read_body(post_authed(&fakes, CHAT, stream_body("x", true)).await).await;
    assert!(!failed);
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn delay_and_chunk_delay() {
    let fakes = start().await;
    script(&fakes, ScriptSpec::new("openai", "/v1/chat/completions").delay_ms(300)).await;
    let started = Instant::now();
    let resp = post_authed(&fakes, CHAT, chat_body("slow")).await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    script(&fakes, ScriptSpec::new("openai", "/v1/chat/completions").chunk_delay_ms(40)).await;
    let started = Instant::now();
    let resp = post_authed(&fakes, CHAT, stream_body("ab", false)).await;
    let headers_after = started.elapsed();
    let mut stream = resp.bytes_stream();
    let mut arrivals = Vec::new();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.expect("chunk"));
        arrivals.push(started.elapsed());
    }
    let events = parse_sse(&String::from_utf8_lossy(&body));
    // role + 5 text chunks ("Hello from the fake OpenAI. You said: ab" = 40 chars) + finish + [DONE]
    assert_eq!(events.len(), 8);
    assert!(headers_after < Duration::from_millis(200), "{headers_after:?}");
    let total = started.elapsed();
    assert!(total >= Duration::from_millis(7 * 40), "{total:?}");
    assert!(arrivals.len() >= 5, "events arrived in one piece: {arrivals:?}");
}

#[tokio::test]
async fn auth_is_required() {
    let fakes = start().await;
    let resp = http().post(fakes.url(CHAT)).json(&chat_body("x")).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(v["error"]["param"], Value::Null);
    let resp = http().get(fakes.url("/openai/v1/models")).header("authorization", "Bearer ").send().await.expect("send");
    assert_eq!(resp.status(), 401);
    // Still recorded.
    assert_eq!(recorded(&fakes, Some("openai"), None).await.requests.len(), 2);
}

#[tokio::test]
async fn bad_chat_requests_get_openai_400s() {
    let fakes = start().await;
    let cases = [
        (json!("not an object"), None),
        (json!({"messages": []}), None),
        (json!({"model": "m"}), Some("messages")),
        (json!({"model": "m", "messages": "hi"}), Some("messages")),
        (json!({"model": "m", "messages": []}), Some("messages")),
        (json!({"model": "m", "messages": [{"content": "x"}]}), Some("messages[0].role")),
        (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"}), Some("max_tokens")),
        (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}), None),
    ];
    for (body, param) in cases {
        let resp = post_authed(&fakes, CHAT, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(v["error"]["param"].as_str(), param, "{body}");
    }
    let resp = http().post(fakes.url(CHAT)).bearer_auth("k").body("{nope").send().await.expect("send");
    assert_eq!(resp.status(), 400);
    // Wrong method on a known path: OpenAI's unknown URL.
    let resp = http().get(fakes.url(CHAT)).bearer_auth("k").send().await.expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["code"], "unknown_url");
}

#[tokio::test]
async fn embeddings_models_and_legacy_completions() {
    let fakes = start().await;
    let v: Value =
        post_authed(&fakes, "/openai/v1/embeddings", json!({"model": "text-embedding-3-small", "input": ["alpha", "beta gamma"]}))
            .await
            .json()
            .await
            .expect("json");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["object"], "embedding");
    let e0: Vec<f32> = serde_json::from_value(v["data"][0]["embedding"].clone()).expect("floats");
    assert_eq!(e0, client::openai::embedding_for("alpha", 8));
    assert_eq!(v["usage"], json!({"prompt_tokens": 2 + 3, "total_tokens": 2 + 3}));
    let resp = post_authed(&fakes, "/openai/v1/embeddings", json!({"model": "m", "input": 5})).await;
    assert_eq!(resp.status(), 400);

    let v: Value = http().get(fakes.url("/openai/v1/models")).bearer_auth("k").send().await.expect("send").json().await.expect("json");
    let ids: Vec<&str> = v["data"].as_array().expect("data").iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&"gpt-4o-mini") && ids.contains(&"text-embedding-3-small"));
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["owned_by"], "openai");

    let v: Value = post_authed(&fakes, "/openai/v1/completions", json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], client::openai::reply_text("Say hi"));
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    let (text, failed) = read_body(
        post_authed(
            &fakes,
            "/openai/v1/completions",
            json!({"model": "m", "prompt": "Say hi", "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await,
    )
    .await;
    assert!(!failed);
    let events = parse_sse(&text);
    assert_eq!(events.last(), Some(&SseEvent::Done));
    let chunks: Vec<Value> = events.iter().filter_map(SseEvent::json).collect();
    let joined: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(joined, client::openai::reply_text("Say hi"));
    let last = chunks.last().expect("usage chunk");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 2);
}

#[tokio::test]
async fn reset_clears_everything() {
    let fakes = start().await;
    script(&fakes, ScriptSpec::new("stripe", "*").status(500).forever()).await;
    let resp = http().post(fakes.url("/stripe/v1/charges")).bearer_auth("sk_test_1").send().await.expect("send");
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.json::<Value>().await.expect("json"), json!({"error": {"message": "Internal Server Error", "type": "api_error"}}));
    let resp = http().post(client::reset_url(&fakes.url)).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert!(recorded(&fakes, None, None).await.requests.is_empty());
    let resp = http().post(fakes.url("/stripe/v1/charges")).bearer_auth("sk_test_1").send().await.expect("send");
    assert_eq!(resp.status(), 404);
    fakes.stop().await;
}
