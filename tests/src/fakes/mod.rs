//! Local fakes of the third-party services Dex Edge talks to.
//!
//! One HTTP server, one path prefix per provider (`/openai`, `/anthropic`,
//! `/openrouter`, `/stripe`, `/twilio`, `/telnyx`, `/google`, `/signal`,
//! `/domains`, `/warmup`). Every request under a provider prefix is
//! recorded (see [`recorder`]) and may be answered by a scripted failure
//! (see [`script`]); the control plane lives under `/__fakes/`.
//!
//! Layout of a provider: a folder `fakes/<provider>/` with `mod.rs`
//! (`routes()` with a fallback in the provider's 404 shape, and
//! `error_body(status)` for scripted failures) and `wire.rs` (the wire
//! types). Providers without their own folder yet answer every path with
//! [`generic`]'s 404. To add one, create the folder and point its entry in
//! [`MOUNTS`] and its [`ProviderSpec`] at it.
//!
//! Providers must send a streamed answer as one SSE event per body frame, so
//! that the scripted `chunk_delay_ms` and `abort_after_chunks` count events.

pub mod anthropic;
pub mod client;
pub mod generic;
pub mod openai;
pub mod openrouter;
pub mod recorder;
pub mod script;
pub mod stripe;
pub mod twilio;

#[cfg(test)]
mod selftest;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use recorder::Recorder;
use script::Scripts;

/// Port the `fakes` binary listens on by default.
pub const DEFAULT_PORT: u16 = 8790;

/// What distinguishes one provider to the shared machinery.
#[derive(Debug)]
pub struct ProviderSpec {
    /// Name used in recordings, scripts and filters (`"openai"`).
    pub name: &'static str,
    /// Body of a scripted failure that gives a status but no body.
    pub error_body: fn(StatusCode) -> Value,
    /// Response header set to `req_fake_<seq>` on every answer (scripted
    /// ones included), if the provider has one.
    pub request_id_header: Option<&'static str>,
}

pub static OPENAI: ProviderSpec = ProviderSpec { name: "openai", error_body: openai::error_body, request_id_header: Some("x-request-id") };
pub static OPENROUTER: ProviderSpec =
    ProviderSpec { name: "openrouter", error_body: openai::error_body, request_id_header: Some("x-request-id") };
pub static ANTHROPIC: ProviderSpec =
    ProviderSpec { name: "anthropic", error_body: anthropic::error_body, request_id_header: Some(anthropic::REQUEST_ID_HEADER) };
pub static STRIPE: ProviderSpec = ProviderSpec { name: "stripe", error_body: stripe::error_body, request_id_header: Some("request-id") };
pub static TWILIO: ProviderSpec =
    ProviderSpec { name: "twilio", error_body: twilio::error_body, request_id_header: Some("twilio-request-id") };
pub static TELNYX: ProviderSpec = generic_spec("telnyx");
pub static GOOGLE: ProviderSpec = generic_spec("google");
pub static SIGNAL: ProviderSpec = generic_spec("signal");
pub static DOMAINS: ProviderSpec = generic_spec("domains");
pub static WARMUP: ProviderSpec = generic_spec("warmup");

const fn generic_spec(name: &'static str) -> ProviderSpec {
    ProviderSpec { name, error_body: generic::error_body, request_id_header: None }
}

/// Every provider, in the order of [`PROVIDER_NAMES`].
pub static PROVIDERS: [&ProviderSpec; 10] =
    [&OPENAI, &ANTHROPIC, &OPENROUTER, &STRIPE, &TWILIO, &TELNYX, &GOOGLE, &SIGNAL, &DOMAINS, &WARMUP];

/// Names accepted as `provider` by the control plane.
pub const PROVIDER_NAMES: [&str; 10] =
    ["openai", "anthropic", "openrouter", "stripe", "twilio", "telnyx", "google", "signal", "domains", "warmup"];

/// The provider of that name, if any.
pub fn provider(name: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().copied().find(|p| p.name == name)
}

/// A path prefix and what serves it. The recorded path is the request path
/// with the prefix removed.
pub struct Mount {
    pub prefix: &'static str,
    pub provider: &'static ProviderSpec,
    pub routes: fn() -> Router<AppState>,
}

/// Path prefixes. `/openrouter/api` (OpenRouter's OpenAI-compatible API and
/// its key-management API) takes precedence over the catch-all `/openrouter`.
pub static MOUNTS: [Mount; 11] = [
    Mount { prefix: "/openai", provider: &OPENAI, routes: openai::routes },
    Mount { prefix: "/openrouter/api", provider: &OPENROUTER, routes: openrouter::routes },
    Mount { prefix: "/openrouter", provider: &OPENROUTER, routes: openai::unknown_url_routes },
    Mount { prefix: "/anthropic", provider: &ANTHROPIC, routes: anthropic::routes },
    Mount { prefix: "/stripe", provider: &STRIPE, routes: stripe::routes },
    Mount { prefix: "/twilio", provider: &TWILIO, routes: twilio::routes },
    Mount { prefix: "/telnyx", provider: &TELNYX, routes: generic::routes },
    Mount { prefix: "/google", provider: &GOOGLE, routes: generic::routes },
    Mount { prefix: "/signal", provider: &SIGNAL, routes: generic::routes },
    Mount { prefix: "/domains", provider: &DOMAINS, routes: generic::routes },
    Mount { prefix: "/warmup", provider: &WARMUP, routes: generic::routes },
];

/// Shared state of one fakes server.
#[derive(Clone, Default)]
pub struct AppState {
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) scripts: Arc<Scripts>,
    pub(crate) twilio: Arc<twilio::VerifyState>,
    pub(crate) openrouter_keys: Arc<openrouter::KeyStore>,
    pub(crate) stripe: Arc<stripe::StripeState>,
}

/// State of the per-provider middleware.
#[derive(Clone)]
pub(crate) struct ProviderCtx {
    pub(crate) state: AppState,
    pub(crate) provider: &'static ProviderSpec,
}

/// Request extension set by the recorder for the provider handlers.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo {
    /// The request's `seq` in the recording.
    pub seq: u64,
    pub provider: &'static ProviderSpec,
}

/// Server options.
#[derive(Debug, Clone, Copy)]
pub struct FakesConfig {
    /// One JSON line per request on stderr (method, path, status, ms).
    pub log_requests: bool,
}

impl Default for FakesConfig {
    fn default() -> Self {
        Self { log_requests: true }
    }
}

/// The whole app: control plane, every provider mount, logging.
pub fn router(config: FakesConfig) -> Router {
    let state = AppState::default();
    let mut app = Router::new()
        .route("/__fakes/health", get(health))
        .route("/__fakes/requests", get(recorder::list_handler).delete(recorder::clear_handler))
        .route("/__fakes/twilio/verifications", get(twilio::verifications_handler))
        .route("/__fakes/openrouter/keys", get(openrouter::minted_keys_handler))
        .merge(stripe::control_routes())
        .route("/__fakes/script", get(script::list_handler).post(script::add_handler).delete(script::clear_handler))
        .route("/__fakes/reset", post(reset));
    for mount in &MOUNTS {
        let ctx = ProviderCtx { state: state.clone(), provider: mount.provider };
        let provider_app = (mount.routes)()
            .layer(from_fn_with_state(ctx.clone(), script::middleware))
            .layer(from_fn_with_state(ctx, recorder::middleware));
        app = app.nest(mount.prefix, provider_app);
    }
    let mut app = app.fallback(top_level_not_found).with_state(state);
    if config.log_requests {
        app = app.layer(from_fn(log_requests));
    }
    app
}

/// Serves the fakes on `listener` until the process ends, logging requests.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    serve_with(listener, FakesConfig::default(), std::future::pending()).await
}

/// Serves the fakes on `listener` until `shutdown` completes, then lets the
/// open requests finish.
pub async fn serve_with<F>(listener: TcpListener, config: FakesConfig, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router(config)).with_graceful_shutdown(shutdown).await
}

/// A fakes server running inside the current tokio runtime.
pub struct RunningFakes {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl RunningFakes {
    /// `url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Stops accepting, waits up to 2 s for open requests, then aborts.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for RunningFakes {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts a fakes server on `127.0.0.1` with a free port, in a task of the
/// current tokio runtime.
pub async fn spawn(config: FakesConfig) -> io::Result<RunningFakes> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(listener, config, async move {
        let _ = rx.await;
    }));
    Ok(RunningFakes { url: format!("http://{addr}"), addr, shutdown: Some(tx), task: Some(task) })
}

// ----------------------------------------------------------------- helpers

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}

/// The control plane's error shape.
pub(crate) fn control_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": "invalid_request"}});
    (status, Json(body)).into_response()
}

async fn health() -> Json<Value> {
    Json(json!({"ok": true}))
}

async fn reset(axum::extract::State(state): axum::extract::State<AppState>) -> Json<Value> {
    state.recorder.clear();
    state.scripts.clear();
    state.twilio.clear();
    state.openrouter_keys.clear();
    state.stripe.clear();
    Json(json!({"ok": true}))
}

async fn top_level_not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(generic::not_found_body())).into_response()
}

/// One JSON line per request on stderr. Never bodies, headers or queries.
async fn log_requests(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let line = json!({
        "ts_ms": now_ms(),
        "method": method,
        "path": path,
        "status": response.status().as_u16(),
        "ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    eprintln!("{line}");
    response
}
