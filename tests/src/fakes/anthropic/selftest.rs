//! Self-tests of the Anthropic fake: a real fakes server on a free port,
//! driven over HTTP.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::fakes::client::anthropic::{
    input_tokens, reply_text, tokens_for, tool_use_tokens, CACHE_CREATION_TOKENS, CACHE_READ_TOKENS, REPLY_PREFIX, TOOL_INPUT, TOOL_USE_ID,
};
use crate::fakes::client::{self, parse_named_sse, NamedSseEvent, RecordedRequests, ScriptSpec};
use crate::fakes::{spawn, FakesConfig, RunningFakes};

const MESSAGES: &str = "/anthropic/v1/messages";
const KEY: &str = "sk-ant-test";
const VERSION: &str = "2023-06-01";

async fn start() -> RunningFakes {
    spawn(FakesConfig { log_requests: false }).await.expect("start fakes")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}

async fn post(fakes: &RunningFakes, body: &Value) -> reqwest::Response {
    http().post(fakes.url(MESSAGES)).header("x-api-key", KEY).header("anthropic-version", VERSION).json(body).send().await.expect("send")
}

async fn post_json(fakes: &RunningFakes, body: &Value) -> (u16, Value) {
    let resp = post(fakes, body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn script(fakes: &RunningFakes, spec: ScriptSpec) {
    let resp = http().post(client::script_url(&fakes.url)).json(&spec.to_json()).send().await.expect("script");
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
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

/// The events of a streamed answer; checks each event name is its `type`.
async fn stream(fakes: &RunningFakes, body: &Value) -> (Vec<Value>, bool) {
    let resp = post(fakes, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let (text, failed) = read_body(resp).await;
    let events: Vec<Value> = parse_named_sse(&text)
        .iter()
        .map(|e: &NamedSseEvent| {
            let data = e.json().expect("event json");
            assert_eq!(e.event.as_deref(), data["type"].as_str(), "{text}");
            data
        })
        .collect();
    (events, failed)
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

fn conversation() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "What is Rust?"}]},
        ],
    })
}

fn tools() -> Value {
    json!([
        {"name": "search", "description": "Search the web", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
        {"name": "calc", "description": "Do math", "input_schema": {"type": "object"}},
    ])
}

#[tokio::test]
async fn message_shape_and_usage() {
    let fakes = start().await;
    let body = conversation();
    let resp = post(&fakes, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("request-id").and_then(|v| v.to_str().ok()), Some("req_fake_1"));
    let v: Value = resp.json().await.expect("json");
    let text = format!("{REPLY_PREFIX}What is Rust?");
    // system 9 chars: 3; "Hi there" 2 + 3; "Hello!" 2 + 3; "What is Rust?" 4 + 3.
    let input = input_tokens(body.get("system"), body["messages"].as_array().expect("messages"));
    assert_eq!(input, 20);
    assert_eq!(tokens_for(&text), 14);
    assert_eq!(
        v,
        json!({
            "id": "msg_fake_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 14, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        })
    );
    // The quote is cut to 40 chars; system blocks count like the string.
    let long = "y".repeat(100);
    let (status, v) = post_json(
        &fakes,
        &json!({"model": "m", "max_tokens": 500, "system": [{"type": "text", "text": "Be brief."}],
                "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["id"], "msg_fake_2");
    assert_eq!(v["content"][0]["text"], reply_text(&long));
    assert_eq!(v["usage"]["input_tokens"], 3 + 25 + 3);
    assert_eq!(v["usage"]["output_tokens"], (41 + 40_u64).div_ceil(4));

    let recorded: RecordedRequests =
        http().get(client::requests_url(&fakes.url, Some("anthropic"), None)).send().await.expect("send").json().await.expect("json");
    assert_eq!(recorded.requests.len(), 2);
    let first = &recorded.requests[0];
    assert_eq!((first.path.as_str(), first.full_path.as_str()), ("/v1/messages", MESSAGES));
    assert_eq!(first.header("x-api-key"), Some(KEY));
    assert_eq!(first.header("anthropic-version"), Some(VERSION));
    assert_eq!(first.json_body(), Some(body));
}

#[tokio::test]
async fn stream_event_order_and_cumulative_usage() {
    let fakes = start().await;
    let mut body = conversation();
    body["stream"] = json!(true);
    let (events, failed) = stream(&fakes, &body).await;
    assert!(!failed);
    let text = format!("{REPLY_PREFIX}What is Rust?");
    // 54 chars: 7 deltas of up to 8, a midway message_delta after the 3rd.
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "message_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(
        events[0],
        json!({"type": "message_start", "message": {
            "id": "msg_fake_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }})
    );
    assert_eq!(events[1], json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
    assert_eq!(events[2], json!({"type": "ping"}));
    assert_eq!(events[3], json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello fr"}}));
    let joined: String = events.iter().filter_map(|e| e["delta"]["text"].as_str()).collect();
    assert_eq!(joined, text);
    assert_eq!(events[11], json!({"type": "content_block_stop", "index": 0}));
    let deltas: Vec<&Value> = events.iter().filter(|e| e["type"] == "message_delta").collect();
    assert_eq!(
        deltas[0],
        &json!({"type": "message_delta", "delta": {"stop_reason": null, "stop_sequence": null}, "usage": {"output_tokens": 6}})
    );
    assert_eq!(
        deltas[1],
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 14}})
    );
    // Keeping the last count is right; adding them up is not.
    assert_eq!(deltas.last().map(|d| d["usage"]["output_tokens"].clone()), Some(json!(tokens_for(&text))));
    assert_eq!(events[13], json!({"type": "message_stop"}));

    // A short answer (2 deltas or fewer) has one message_delta.
    let (events, _) =
        stream(&fakes, &json!({"model": "m", "max_tokens": 4, "stream": true, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(types(&events).iter().filter(|t| **t == "message_delta").count(), 1);
    assert_eq!(events[events.len() - 2]["usage"]["output_tokens"], 4);
    assert_eq!(events[events.len() - 2]["delta"]["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn tool_use_plain_and_streamed() {
    let fakes = start().await;
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 256, "tools": tools(),
                      "messages": [{"role": "user", "content": "Please use a TOOL to look this up"}]});
    let (status, v) = post_json(&fakes, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"], json!([{"type": "tool_use", "id": TOOL_USE_ID, "name": "search", "input": {"query": "fake"}}]));
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["usage"]["output_tokens"], tool_use_tokens(TOOL_INPUT));
    assert_eq!(tool_use_tokens(TOOL_INPUT), 14);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (events, failed) = stream(&fakes, &streamed).await;
    assert!(!failed);
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[1],
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "tool_use", "id": TOOL_USE_ID, "name": "search", "input": {}}})
    );
    assert_eq!(events[3]["delta"], json!({"type": "input_json_delta", "partial_json": "{\"query\""}));
    let json_text: String = events.iter().filter_map(|e| e["delta"]["partial_json"].as_str()).collect();
    assert_eq!(json_text, TOOL_INPUT);
    assert_eq!(events[6]["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[6]["usage"], json!({"output_tokens": 14}));

    // Without "tool" in the text, a text answer; tool results end the loop.
    let (_, v) = post_json(
        &fakes,
        &json!({"model": "m", "max_tokens": 256, "tools": tools(), "messages": [
            {"role": "user", "content": "use the tool"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": TOOL_USE_ID, "name": "search", "input": {"query": "fake"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": TOOL_USE_ID, "content": "42"}]},
        ]}),
    )
    .await;
    assert_eq!(v["content"][0]["text"], REPLY_PREFIX);
    assert_eq!(v["stop_reason"], "end_turn");
    // 3 + 3 ("use the tool") + 4 + 3 ({"query":"fake"}) + 1 + 3 ("42").
    assert_eq!(v["usage"]["input_tokens"], 17);
    // tool_choice forces a named tool.
    let (_, v) = post_json(
        &fakes,
        &json!({"model": "m", "max_tokens": 256, "tools": tools(), "tool_choice": {"type": "tool", "name": "calc"},
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(v["content"][0]["name"], "calc");
    assert_eq!(v["stop_reason"], "tool_use");
}

#[tokio::test]
async fn max_tokens_cuts_the_answer() {
    let fakes = start().await;
    let (_, v) = post_json(&fakes, &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hello"}]})).await;
    assert_eq!(v["content"], json!([{"type": "text", "text": "Hello from the fake "}]));
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 5);
    let (events, _) =
        stream(&fakes, &json!({"model": "m", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hello"}]})).await;
    let joined: String = events.iter().filter_map(|e| e["delta"]["text"].as_str()).collect();
    assert_eq!(joined, "Hello from the fake ");
    let last_delta = events.iter().rev().find(|e| e["type"] == "message_delta").expect("message_delta");
    assert_eq!(last_delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(last_delta["usage"]["output_tokens"], 5);
    // A tool call that does not fit: cut, input {}.
    let (_, v) = post_json(
        &fakes,
        &json!({"model": "m", "max_tokens": 11, "tools": tools(), "messages": [{"role": "user", "content": "tool please"}]}),
    )
    .await;
    assert_eq!(v["content"][0]["input"], json!({}));
    assert_eq!((v["stop_reason"].as_str(), v["usage"]["output_tokens"].as_u64()), (Some("max_tokens"), Some(11)));
    // A stop sequence cuts first.
    let (_, v) = post_json(
        &fakes,
        &json!({"model": "m", "max_tokens": 100, "stop_sequences": ["Anthropic"], "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(v["content"][0]["text"], "Hello from the fake ");
    assert_eq!((v["stop_reason"].as_str(), v["stop_sequence"].as_str()), (Some("stop_sequence"), Some("Anthropic")));
}

#[tokio::test]
async fn cache_control_reports_cache_tokens() {
    let fakes = start().await;
    let body = json!({"model": "m", "max_tokens": 100,
        "system": [{"type": "text", "text": "Long shared prefix", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}]});
    let (_, v) = post_json(&fakes, &body).await;
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 5 + 1 + 3, "output_tokens": tokens_for(&reply_text("hi")),
               "cache_creation_input_tokens": CACHE_CREATION_TOKENS, "cache_read_input_tokens": CACHE_READ_TOKENS})
    );
    assert_eq!((CACHE_READ_TOKENS, CACHE_CREATION_TOKENS), (5, 7));
    // In a message block too, and in message_start of a stream.
    let body = json!({"model": "m", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]});
    let (events, _) = stream(&fakes, &body).await;
    assert_eq!(events[0]["message"]["usage"]["cache_read_input_tokens"], 5);
    assert_eq!(events[0]["message"]["usage"]["cache_creation_input_tokens"], 7);
    assert_eq!(events[0]["message"]["usage"]["input_tokens"], 4);
}

#[tokio::test]
async fn auth_and_version_headers() {
    let fakes = start().await;
    let body = conversation();
    let expected_401 = json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}});
    let resp = http().post(fakes.url(MESSAGES)).header("anthropic-version", VERSION).json(&body).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers().get("request-id").and_then(|v| v.to_str().ok()), Some("req_fake_1"));
    assert_eq!(resp.json::<Value>().await.expect("json"), expected_401);
    // Bearer auth is not Anthropic's; an empty key is no key.
    let resp =
        http().post(fakes.url(MESSAGES)).bearer_auth(KEY).header("anthropic-version", VERSION).json(&body).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    let resp = http()
        .post(fakes.url(MESSAGES))
        .header("x-api-key", "")
        .header("anthropic-version", VERSION)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let resp = http().get(fakes.url("/anthropic/v1/models")).header("anthropic-version", VERSION).send().await.expect("send");
    assert_eq!(resp.status(), 401);

    let resp = http().post(fakes.url(MESSAGES)).header("x-api-key", KEY).json(&body).send().await.expect("send");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["message"], "anthropic-version: header is required");
}

#[tokio::test]
async fn bad_requests_get_invalid_request_error() {
    let fakes = start().await;
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!("not an object"), ""),
        (json!({"max_tokens": 5, "messages": user}), "model: Field required"),
        (json!({"model": 5, "max_tokens": 5, "messages": user}), "model: Input should be a valid string"),
        (json!({"model": "m", "messages": user}), "max_tokens: Field required"),
        (json!({"model": "m", "max_tokens": 0, "messages": user}), "max_tokens: Input should be greater than or equal to 1"),
        (json!({"model": "m", "max_tokens": "5", "messages": user}), "max_tokens: Input should be a valid integer"),
        (json!({"model": "m", "max_tokens": 1.5, "messages": user}), "max_tokens: Input should be a valid integer"),
        (json!({"model": "m", "max_tokens": 5}), "messages: Field required"),
        (json!({"model": "m", "max_tokens": 5, "messages": []}), "messages: at least one message is required"),
        (json!({"model": "m", "max_tokens": 5, "messages": "hi"}), "messages: Input should be a valid list"),
        (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}), "messages.0.role"),
        (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user"}]}), "messages.0.content: Field required"),
        (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": ""}]}), "messages.0: all messages"),
        (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]}), "messages.0.content.0"),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages.0.content.0.text",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]}),
            "messages.0.content.0.tool_use_id: Field required",
        ),
        (json!({"model": "m", "max_tokens": 5, "messages": user, "system": 5}), "system"),
        (json!({"model": "m", "max_tokens": 5, "messages": user, "tools": [{"name": "t"}]}), "tools.0.input_schema: Field required"),
        (json!({"model": "m", "max_tokens": 5, "messages": user, "tool_choice": {"type": "any"}}), "tool_choice may only be specified"),
        (json!({"model": "m", "max_tokens": 5, "messages": user, "stream": "yes"}), "stream: Input should be a valid boolean"),
        (json!({"model": "m", "max_tokens": 5, "messages": user, "temperature": 2}), "temperature"),
        (json!({"model": "m", "max_tokens": 5, "messages": user, "stop_sequences": "x"}), "stop_sequences"),
        (json!({"model": "m", "max_tokens": 5, "messages": user, "metadata": "x"}), "metadata"),
    ];
    for (body, message) in cases {
        let (status, v) = post_json(&fakes, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(v["type"], "error", "{body}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        let got = v["error"]["message"].as_str().expect("message");
        assert!(got.starts_with(message), "{body}: {got}");
    }
    let resp = http()
        .post(fakes.url(MESSAGES))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .body("{nope")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["type"], "invalid_request_error");
    // A final empty assistant message (prefill) is fine.
    let (status, _) = post_json(
        &fakes,
        &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn scripted_failures_and_stream_controls() {
    let fakes = start().await;
    script(&fakes, ScriptSpec::new("anthropic", "/v1/messages").status(529)).await;
    let resp = post(&fakes, &conversation()).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(resp.headers().get("request-id").and_then(|v| v.to_str().ok()), Some("req_fake_1"));
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    script(&fakes, ScriptSpec::new("anthropic", "/v1/messages").status(429).header("retry-after", "3")).await;
    let resp = post(&fakes, &conversation()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["type"], "rate_limit_error");
    // Scripts are used up: normal answer again.
    assert_eq!(post(&fakes, &conversation()).await.status(), 200);

    let mut body = conversation();
    body["stream"] = json!(true);
    script(&fakes, ScriptSpec::new("anthropic", "/v1/messages").omit_usage()).await;
    let (events, failed) = stream(&fakes, &body).await;
    assert!(!failed);
    let deltas: Vec<&Value> = events.iter().filter(|e| e["type"] == "message_delta").collect();
    assert_eq!(deltas.len(), 2);
    assert!(deltas.iter().all(|d| d.get("usage").is_none()), "{deltas:?}");
    assert_eq!(deltas[1]["delta"]["stop_reason"], "end_turn");
    // message_start keeps its usage.
    assert_eq!(events[0]["message"]["usage"]["input_tokens"], 20);

    script(&fakes, ScriptSpec::new("anthropic", "/v1/messages").abort_after_chunks(4)).await;
    let resp = post(&fakes, &body).await;
    assert_eq!(resp.status(), 200);
    let (text, failed) = read_body(resp).await;
    assert!(failed, "the body should end abruptly: {text}");
    let events = parse_named_sse(&text);
    assert_eq!(
        events.iter().filter_map(|e| e.event.as_deref()).collect::<Vec<_>>(),
        ["message_start", "content_block_start", "ping", "content_block_delta"]
    );
}

#[tokio::test]
async fn models_count_tokens_and_unknown_paths() {
    let fakes = start().await;
    let get = |path: &str| http().get(fakes.url(path)).header("x-api-key", KEY).header("anthropic-version", VERSION).send();
    let v: Value = get("/anthropic/v1/models").await.expect("send").json().await.expect("json");
    assert_eq!(
        v["data"][0],
        json!({"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"})
    );
    assert_eq!(v["data"][1]["id"], "claude-haiku-4-5");
    assert_eq!(
        (v["has_more"].as_bool(), v["first_id"].as_str(), v["last_id"].as_str()),
        (Some(false), Some("claude-sonnet-4-5"), Some("claude-haiku-4-5"))
    );
    let v: Value = get("/anthropic/v1/models/claude-haiku-4-5").await.expect("send").json().await.expect("json");
    assert_eq!(v["display_name"], "Claude Haiku 4.5");
    let resp = get("/anthropic/v1/models/gpt-4o").await.expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["type"], "not_found_error");

    let resp = http()
        .post(fakes.url("/anthropic/v1/messages/count_tokens"))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .json(&json!({"model": "m", "system": "Be brief.", "messages": [{"role": "user", "content": "Hi there"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.json::<Value>().await.expect("json"), json!({"input_tokens": 3 + 2 + 3}));

    let not_found = json!({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}});
    for path in ["/anthropic/v1/complete", "/anthropic/v2/messages", "/anthropic"] {
        let resp = get(path).await.expect("send");
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(resp.json::<Value>().await.expect("json"), not_found, "{path}");
    }
    // Wrong method on a known path.
    let resp = get(MESSAGES).await.expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.expect("json"), not_found);
}
