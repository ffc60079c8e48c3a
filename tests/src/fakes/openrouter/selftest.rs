//! Self-tests of OpenRouter's key-management fake: a real fakes server on a
//! free port, driven over HTTP.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fakes::client::{self, MintedKeys, RecordedRequests, ScriptSpec};
use crate::fakes::{spawn, FakesConfig, RunningFakes};

const KEYS: &str = "/openrouter/api/v1/keys";
const CHAT: &str = "/openrouter/api/v1/chat/completions";
const MANAGEMENT_KEY: &str = "sk-or-v1-management";

async fn start() -> RunningFakes {
    spawn(FakesConfig { log_requests: false }).await.expect("start fakes")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client")
}

async fn call(fakes: &RunningFakes, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, fakes.url(path)).bearer_auth(MANAGEMENT_KEY);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn minted(fakes: &RunningFakes) -> MintedKeys {
    http().get(client::openrouter_keys_url(&fakes.url)).send().await.expect("send").json().await.expect("json")
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn create_list_get_patch_delete() {
    let fakes = start().await;
    let (status, created) =
        call(&fakes, reqwest::Method::POST, KEYS, Some(json!({"name": "customer-42", "limit": 25, "include_byok_in_limit": true}))).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();
    let hex = key.strip_prefix("sk-or-v1-").expect("sk-or-v1- prefix");
    assert!(is_hex64(hex), "{key}");
    let data = &created["data"];
    let hash = data["hash"].as_str().expect("hash").to_owned();
    assert!(is_hex64(&hash));
    assert_ne!(hash, hex);
    assert_eq!(data["label"], format!("sk-or-v1-{}...{}", &hex[..3], &hex[60..]));
    assert_eq!(data["name"], "customer-42");
    assert_eq!((data["limit"].clone(), data["limit_remaining"].clone()), (json!(25), json!(25)));
    assert_eq!(data["include_byok_in_limit"], true);
    assert_eq!((data["disabled"].as_bool(), data["usage"].as_u64()), (Some(false), Some(0)));
    assert_eq!(data["limit_reset"], Value::Null);
    assert_eq!(data["updated_at"], Value::Null);
    assert!(data["created_at"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 20));
    assert!(data.get("key").is_none());

    let (status, second) = call(&fakes, reqwest::Method::POST, KEYS, Some(json!({"name": "no-limit", "limit": null}))).await;
    assert_eq!(status, 201);
    assert_eq!((second["data"]["limit"].clone(), second["data"]["limit_remaining"].clone()), (Value::Null, Value::Null));
    assert_eq!(second["data"]["include_byok_in_limit"], false);
    let second_hash = second["data"]["hash"].as_str().expect("hash").to_owned();

    // List: newest first, never the key itself.
    let (status, list) = call(&fakes, reqwest::Method::GET, KEYS, None).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = list["data"].as_array().expect("data").iter().filter_map(|k| k["hash"].as_str()).collect();
    assert_eq!(listed, [second_hash.as_str(), hash.as_str()]);
    assert!(!list.to_string().contains(&key));
    assert_eq!(list["data"][1], *data);

    let (status, got) = call(&fakes, reqwest::Method::GET, &format!("{KEYS}/{hash}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(got, json!({"data": data}));

    let (status, patched) =
        call(&fakes, reqwest::Method::PATCH, &format!("{KEYS}/{hash}"), Some(json!({"limit": 50.5, "disabled": true, "name": "renamed"})))
            .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!((patched["data"]["limit"].clone(), patched["data"]["limit_remaining"].clone()), (json!(50.5), json!(50.5)));
    assert_eq!((patched["data"]["disabled"].as_bool(), patched["data"]["name"].as_str()), (Some(true), Some("renamed")));
    assert_eq!(patched["data"]["include_byok_in_limit"], true);
    assert!(patched["data"]["updated_at"].is_string());
    assert_eq!(patched["data"]["hash"], hash.as_str());

    // Disabled keys are listed only when asked.
    let (_, list) = call(&fakes, reqwest::Method::GET, KEYS, None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    let (_, list) = call(&fakes, reqwest::Method::GET, &format!("{KEYS}?include_disabled=true"), None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
    let (_, list) = call(&fakes, reqwest::Method::GET, &format!("{KEYS}?include_disabled=true&offset=1"), None).await;
    assert_eq!(list["data"][0]["hash"], hash.as_str());

    // The control plane has the full keys.
    let keys = minted(&fakes).await.keys;
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].key.as_str(), keys[0].name.as_str(), keys[0].disabled), (key.as_str(), "renamed", true));
    assert_eq!(keys[0].limit.as_ref().map(ToString::to_string).as_deref(), Some("50.5"));
    assert_eq!(keys[1].limit, None);

    let (status, deleted) = call(&fakes, reqwest::Method::DELETE, &format!("{KEYS}/{hash}"), None).await;
    assert_eq!((status, deleted), (200, json!({"deleted": true})));
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, v) = call(&fakes, method, &format!("{KEYS}/{hash}"), None).await;
        assert_eq!((status, v), (404, json!({"error": {"code": 404, "message": "API key not found"}})));
    }
    let (_, list) = call(&fakes, reqwest::Method::GET, &format!("{KEYS}?include_disabled=true"), None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    let keys = minted(&fakes).await.keys;
    assert!(keys[0].deleted && !keys[1].deleted);

    // Reset forgets them.
    assert_eq!(http().post(client::reset_url(&fakes.url)).send().await.expect("send").status(), 200);
    assert!(minted(&fakes).await.keys.is_empty());
    let (_, list) = call(&fakes, reqwest::Method::GET, KEYS, None).await;
    assert_eq!(list, json!({"data": []}));
}

#[tokio::test]
async fn minted_key_works_on_chat() {
    let fakes = start().await;
    let (_, created) = call(&fakes, reqwest::Method::POST, KEYS, Some(json!({"name": "chat", "limit": 1}))).await;
    let key = created["key"].as_str().expect("key").to_owned();
    let resp = http()
        .post(fakes.url(CHAT))
        .bearer_auth(&key)
        .json(&json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], client::openai::reply_text("hi"));

    let recorded: RecordedRequests = http()
        .get(client::requests_url(&fakes.url, Some("openrouter"), Some("/v1/chat/completions")))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(recorded.requests.len(), 1);
    assert_eq!(recorded.requests[0].header("authorization"), Some(format!("Bearer {key}").as_str()));
    let keys = minted(&fakes).await.keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].key, key);
    // Key management requests are recorded too.
    let recorded: RecordedRequests = http()
        .get(client::requests_url(&fakes.url, Some("openrouter"), Some("/v1/keys")))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(recorded.requests.len(), 1);
    assert_eq!(recorded.requests[0].full_path, KEYS);
}

#[tokio::test]
async fn auth_and_bad_requests() {
    let fakes = start().await;
    let no_auth = json!({"error": {"code": 401, "message": "No auth credentials found"}});
    let resp = http().post(fakes.url(KEYS)).json(&json!({"name": "x"})).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.expect("json"), no_auth);
    for path in [KEYS.to_owned(), format!("{KEYS}/abc")] {
        let resp = http().get(fakes.url(&path)).header("authorization", "Bearer ").send().await.expect("send");
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(resp.json::<Value>().await.expect("json"), no_auth);
    }
    assert!(minted(&fakes).await.keys.is_empty());

    let cases = [
        json!({}),
        json!({"name": ""}),
        json!({"name": 5}),
        json!({"name": "x", "limit": -1}),
        json!({"name": "x", "limit": "10"}),
        json!({"name": "x", "include_byok_in_limit": "yes"}),
        json!({"name": "x", "limit_reset": "yearly"}),
        json!(["name"]),
    ];
    for body in cases {
        let (status, v) = call(&fakes, reqwest::Method::POST, KEYS, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(v["error"]["code"], 400, "{body}");
        assert!(v["error"]["message"].is_string(), "{body}");
    }
    let resp = http().post(fakes.url(KEYS)).bearer_auth(MANAGEMENT_KEY).body("{nope").send().await.expect("send");
    assert_eq!(resp.status(), 400);
    assert!(minted(&fakes).await.keys.is_empty());

    // The trailing-slash form of create works too.
    let (status, _) = call(&fakes, reqwest::Method::POST, &format!("{KEYS}/"), Some(json!({"name": "slash"}))).await;
    assert_eq!(status, 201);
    let hash = call(&fakes, reqwest::Method::GET, KEYS, None).await.1["data"][0]["hash"].as_str().expect("hash").to_owned();
    let (status, v) = call(&fakes, reqwest::Method::PATCH, &format!("{KEYS}/{hash}"), Some(json!({"disabled": "no"}))).await;
    assert_eq!((status, v["error"]["code"].as_u64()), (400, Some(400)));
    let (status, _) = call(&fakes, reqwest::Method::PATCH, &format!("{KEYS}/{}", "0".repeat(64)), Some(json!({"disabled": true}))).await;
    assert_eq!(status, 404);
    let (status, v) = call(&fakes, reqwest::Method::PUT, KEYS, Some(json!({}))).await;
    assert_eq!((status, v["error"]["code"].as_u64()), (405, Some(405)));

    // Scripted failures work on the key routes like on any other.
    let spec = ScriptSpec::new("openrouter", "/v1/keys").method("POST").status(500);
    let resp = http().post(client::script_url(&fakes.url)).json(&spec.to_json()).send().await.expect("script");
    assert_eq!(resp.status(), 200);
    let (status, _) = call(&fakes, reqwest::Method::POST, KEYS, Some(json!({"name": "scripted"}))).await;
    assert_eq!(status, 500);
    assert_eq!(minted(&fakes).await.keys.len(), 1);

    // The OpenAI-compatible routes and their 404 are still there.
    let (status, v) = call(&fakes, reqwest::Method::GET, "/openrouter/api/v1/nope", None).await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("unknown_url")));
    let (status, v) = call(&fakes, reqwest::Method::GET, "/openrouter/api/v1/models", None).await;
    assert_eq!((status, v["object"].as_str()), (200, Some("list")));
}
