//! Harness for the end-to-end suite: the running stack described by
//! `stack.json` (written by scripts/stack.sh), an HTTP client, and helpers.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Stack {
    pub base: String,
    pub fakes: String,
    pub persist_dir: String,
    pub repo_root: String,
    pub bootstrap_token: String,
    pub operator_key: String,
    pub demo_key: String,
    pub demo_account: String,
    pub http: reqwest::Client,
}

pub fn stack_json() -> Value {
    let path = std::env::var("DEX_STACK_JSON").unwrap_or_else(|_| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.dev/stack.json");
        root.to_string_lossy().into_owned()
    });
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no stack at {path} ({e}); run `make test` (or `make dev` for the dev stack)"));
    serde_json::from_str(&text).expect("stack.json is JSON")
}

pub fn stack() -> Stack {
    let s = stack_json();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Stack {
        base: text(&s["base_url"]),
        fakes: text(&s["fakes_url"]),
        persist_dir: text(&s["persist_dir"]),
        repo_root: text(&s["repo_root"]),
        bootstrap_token: text(&s["bootstrap_token"]),
        operator_key: text(&s["operator"]["api_key"]),
        demo_key: text(&s["demo"]["api_key"]),
        demo_account: text(&s["demo"]["account_id"]),
        // Idle connections are dropped quickly: the local dev server closes
        // them after a few seconds, and reusing one then is a reset, not a bug.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_millis(1_500))
            .build()
            .expect("client"),
    }
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the OpenAI error shape with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        assert_eq!(self.body["error"]["code"], code, "code; body: {}", self.text);
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "message; body: {}", self.text);
        assert!(self.body["error"]["type"].is_string(), "type; body: {}", self.text);
        assert!(self.header("content-type").is_some_and(|c| c.starts_with("application/json")), "content-type");
        assert!(self.header("x-request-id").is_some(), "x-request-id on an error");
    }
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, body, text }
}

impl Stack {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        for attempt in 0.. {
            let mut req = self.http.request(method.clone(), self.url(path));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let a = answer(req.send().await.expect("request reaches the Worker")).await;
            // Under a burst, wrangler's local dev proxy sometimes answers 503
            // itself without passing the request on (seen here). Our Worker
            // never answers without `x-request-id`, so such an answer is the
            // harness's, and the request is sent again.
            if a.status == 503 && a.header("x-request-id").is_none() && attempt < 5 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            return a;
        }
        unreachable!("the loop returns")
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Answer {
        self.send("GET", path, key, None).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> Answer {
        self.send("POST", path, key, Some(body)).await
    }

    /// A fresh account (and its first key) so a test owns its state.
    pub async fn new_account(&self, label: &str) -> (String, String) {
        let email = format!("{label}-{}@e2e.test", unique());
        let a = self.post("/v1/admin/accounts", Some(&self.operator_key), json!({"email": email, "password": "e2e-password-123"})).await;
        assert_eq!(a.status, 201, "{}", a.text);
        (
            a.body["account"]["id"].as_str().unwrap_or_default().to_string(),
            a.body["api_key"]["key"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// Polls `GET /v1/admin/jobs/:id` until the status is one of `done`.
    pub async fn wait_job(&self, job_id: &str, done: &[&str], within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let j = self.get(&format!("/v1/admin/jobs/{job_id}"), Some(&self.operator_key)).await;
            if j.status == 200 && done.iter().any(|d| j.body["status"] == *d) {
                return j.body;
            }
            assert!(start.elapsed() < within, "job {job_id} not {done:?} within {within:?}: {}", j.text);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs SQL against the stack's local D1 (the same SQLite files the Worker
    /// uses), for setting up rows no route creates yet and for reading back.
    pub fn d1(&self, sql: &str) -> Value {
        // The Worker holds the same SQLite file open; a write here can meet
        // SQLITE_BUSY while it writes, so busy answers are retried.
        for _ in 0..20 {
            let out = Command::new(format!("{}/node_modules/.bin/wrangler", self.repo_root))
                .current_dir(&self.repo_root)
                .env("WRANGLER_SEND_METRICS", "false")
                .args(["d1", "execute", "DB", "--local", "--persist-to", &self.persist_dir, "--json", "--command", sql])
                .output()
                .expect("wrangler runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            if out.status.success() {
                return serde_json::from_str::<Value>(&stdout).map(|v| v[0]["results"].clone()).unwrap_or(Value::Null);
            }
            assert!(stdout.contains("SQLITE_BUSY"), "d1 execute failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("D1 stayed busy for {sql}");
    }

    pub async fn fakes_reset(&self) {
        let _ = self.http.delete(format!("{}/__fakes/script", self.fakes)).send().await;
    }

    pub async fn fakes_script(&self, spec: Value) {
        let r = self.http.post(format!("{}/__fakes/script", self.fakes)).json(&spec).send().await.expect("fakes reachable");
        assert!(r.status().is_success(), "script accepted");
    }

    pub async fn fakes_requests(&self, provider: &str, path: &str) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}/__fakes/requests", self.fakes))
            .query(&[("provider", provider), ("path", path)])
            .send()
            .await
            .expect("fakes reachable");
        let v: Value = r.json().await.unwrap_or(Value::Null);
        v["requests"].as_array().cloned().unwrap_or_default()
    }
}

/// A signed-in user of a fresh account: (access token, refresh token, body).
pub struct Session {
    pub token: String,
    pub refresh: String,
    pub email: String,
    pub password: String,
    pub account_id: String,
    pub user_id: String,
}

impl Stack {
    pub async fn register(&self, label: &str) -> Session {
        let email = format!("{label}-{}@e2e.test", unique());
        let password = "e2e-password-123".to_string();
        let r = self.post("/v1/auth/register", None, json!({"email": email, "password": password})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        Session {
            token: r.body["token"].as_str().unwrap_or_default().into(),
            refresh: r.body["refresh_token"].as_str().unwrap_or_default().into(),
            account_id: r.body["user"]["account_id"].as_str().unwrap_or_default().into(),
            user_id: r.body["user"]["id"].as_str().unwrap_or_default().into(),
            email,
            password,
        }
    }

    /// A new API key for a signed-in user (via the Dex route).
    pub async fn create_key(&self, session_token: &str, name: &str) -> (String, String) {
        let r = self.post("/v1/api-keys", Some(session_token), json!({"name": name})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        (r.body["id"].as_str().unwrap_or_default().into(), r.body["key"].as_str().unwrap_or_default().into())
    }
}

/// The code the Twilio Verify fake "texted" to this number.
pub async fn twilio_code(s: &Stack, phone: &str) -> String {
    let r = s.http.get(format!("{}/__fakes/twilio/verifications", s.fakes)).query(&[("to", phone)]).send().await.expect("fakes reachable");
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["code"].as_str().unwrap_or_default().to_string()
}

pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:x}{}", N.fetch_add(1, Ordering::Relaxed))
}
