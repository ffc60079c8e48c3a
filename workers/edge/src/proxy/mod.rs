//! The AI proxy: OpenAI- and Anthropic-compatible surfaces over OpenAI,
//! OpenRouter and Anthropic upstreams, with failover before the first byte,
//! a circuit breaker per upstream, streaming without buffering, and a usage
//! record per request written after the response (`wait_until`).

pub mod billing;
mod breaker;
mod stream;
mod upstream_keys;

use std::time::Duration;

use dex_shared::error::ApiError;
use dex_shared::models::{self, Dialect, Kind, Model, Provider, Target};
use dex_shared::money::micros_to_usd_string;
use dex_shared::translate::{self, usage::Usage};
use serde_json::{json, Value};
use worker::{Request, Response};

use crate::auth::Principal;
use crate::edge::{read_body, Ctx, HandlerResult, OrInternal};
use crate::logging::{self, now_ms};
use crate::providers::upstream::{self, Failure};
use crate::repositories::usage::{self as usage_repo, UsageRecord};

/// What the client called: decides the request checks, the wire dialect of
/// the answer and of errors, and the upstream path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    ChatCompletions,
    Completions,
    Embeddings,
    Messages,
}

impl Surface {
    pub fn dialect(self) -> Dialect {
        if self == Surface::Messages {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

const MAX_ATTEMPTS: usize = 3;

fn first_byte_timeout(ctx: &Ctx) -> Duration {
    Duration::from_millis(ctx.config().get_u64("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", 60_000))
}

fn markup_bps(ctx: &Ctx) -> u32 {
    ctx.config().get_u64("PRICE_MARKUP_BPS", 0) as u32
}

fn bad(param: &'static str, message: &str) -> ApiError {
    ApiError::bad_request(param, message.to_string())
}

/// Checks the body before anything is sent upstream. Unknown fields pass.
fn validate(surface: Surface, body: &Value) -> Result<&'static Model, ApiError> {
    let obj = body.as_object().ok_or_else(|| bad("invalid_request", "The request body must be a JSON object."))?;
    let model_id = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| bad("missing_model", "model is required."))?;
    match surface {
        Surface::ChatCompletions | Surface::Messages => {
            let ok = obj.get("messages").and_then(Value::as_array).is_some_and(|m| !m.is_empty());
            if !ok {
                return Err(bad("missing_messages", "messages must be a non-empty array."));
            }
        }
        Surface::Completions => {
            if obj.get("prompt").is_none_or(Value::is_null) {
                return Err(bad("missing_prompt", "prompt is required."));
            }
        }
        Surface::Embeddings => {
            if obj.get("input").is_none_or(Value::is_null) {
                return Err(bad("missing_input", "input is required."));
            }
        }
    }
    let positive = |v: &Value| v.as_u64().is_some_and(|n| n > 0);
    if surface == Surface::Messages && !obj.get("max_tokens").is_some_and(positive) {
        return Err(bad("missing_max_tokens", "max_tokens must be a positive integer."));
    }
    for field in ["max_tokens", "max_completion_tokens"] {
        if let Some(v) = obj.get(field) {
            if !(v.is_null() || positive(v)) {
                return Err(bad("invalid_max_tokens", &format!("{field} must be a positive integer.")));
            }
        }
    }
    let model = models::resolve(model_id).ok_or_else(|| {
        ApiError::new(
            404,
            "invalid_request_error",
            "model_not_found",
            format!("The model '{model_id}' does not exist or is not routed here. See GET /v1/models."),
        )
    })?;
    let fits = match surface {
        Surface::Embeddings => model.kind == Kind::Embedding,
        _ => model.kind == Kind::Chat,
    };
    if !fits {
        return Err(bad("wrong_model_kind", &format!("{} cannot serve this endpoint.", model.id)));
    }
    Ok(model)
}

fn upstream_path(surface: Surface, upstream: Dialect) -> &'static str {
    match (surface, upstream) {
        (_, Dialect::Anthropic) => "/v1/messages",
        (Surface::Completions, _) => "/v1/completions",
        (Surface::Embeddings, _) => "/v1/embeddings",
        _ => "/v1/chat/completions",
    }
}

/// The body to send to one target, in its dialect.
fn upstream_body(surface: Surface, body: &Value, model: &Model, target: &Target, stream: bool) -> Result<Value, ApiError> {
    let to = target.provider.dialect();
    let mut out = match (surface.dialect(), to) {
        (Dialect::OpenAi, Dialect::OpenAi) | (Dialect::Anthropic, Dialect::Anthropic) => body.clone(),
        (Dialect::OpenAi, Dialect::Anthropic) => translate::openai_chat_to_anthropic(body, target.upstream_model, model.default_max_output)
            .map_err(|e| bad("untranslatable_request", &e.message))?,
        (Dialect::Anthropic, Dialect::OpenAi) => {
            translate::anthropic_to_openai_chat(body, target.upstream_model).map_err(|e| bad("untranslatable_request", &e.message))?
        }
    };
    out["model"] = json!(target.upstream_model);
    // OpenAI-style streams only report usage when asked; we always ask and
    // strip the usage chunk later if the client did not.
    if stream && to == Dialect::OpenAi && surface != Surface::Embeddings {
        out["stream_options"] = json!({"include_usage": true});
    }
    Ok(out)
}

/// Whether an upstream answer lets us try the next target.
fn retryable(status: u16) -> bool {
    status == 429 || status == 408 || status >= 500
}

pub async fn handle(ctx: &Ctx, who: &Principal, mut req: Request, surface: Surface) -> HandlerResult {
    let started = now_ms();
    let bytes = read_body(&mut req, ctx.config().max_body_bytes()).await?;
    let body: Value = serde_json::from_slice(&bytes).map_err(ApiError::invalid_json)?;
    let model = validate(surface, &body)?;
    let stream = surface != Surface::Embeddings && body["stream"] == json!(true);
    let client_wants_usage = body["stream_options"]["include_usage"] == json!(true);

    let config = ctx.config();
    let targets: Vec<&Target> = model
        .targets
        .iter()
        .filter(|t| !(matches!(surface, Surface::Completions | Surface::Embeddings) && t.provider.dialect() == Dialect::Anthropic))
        .filter(|t| upstream::endpoint(&config, t.provider).is_some())
        .collect();
    if targets.is_empty() {
        return Err(ApiError::unavailable("no_upstream", format!("No upstream is configured for {}.", model.id)));
    }

    let plan = who.key().map(|k| k.plan.clone()).unwrap_or_else(|| "prepaid".into());
    let estimate = billing::estimate(model, &body, bytes.len() as u64, markup_bps(ctx));
    // Tokens per minute: the worst case now, the unused part given back later.
    let tokens_taken = estimate.input_tokens + estimate.max_output_tokens;
    let t_limits = now_ms();
    let limits = match who.key() {
        Some(k) if !who.is_operator => Some(crate::auth::rate_limit_with_tokens(ctx, k, tokens_taken).await?),
        _ => None,
    };
    let t_reserve = now_ms();
    let ttl = ctx.config().get_u64("WALLET_HOLD_TTL_MS", billing::HOLD_TTL_MS as u64) as i64;
    // A stream can outlive anything an isolate holds for it, so it has its
    // own hold in the account's WALLET (settled there, or by its alarm);
    // a whole answer is reserved against this isolate's lease.
    let reserved = if stream {
        billing::reserve(&ctx.env, &ctx.request_id, &who.account_id, &plan, &estimate, ttl).await
    } else {
        crate::meter::reserve(&ctx.env, &who.account_id, &plan, &estimate, &ctx.request_id, ttl).await
    };
    let reservation = match reserved {
        Ok(r) => r,
        Err(e) => {
            if let Some(k) = who.key() {
                crate::auth::give_back_tokens(&ctx.env, &k.key_id, &plan, tokens_taken).await;
            }
            return Err(e);
        }
    };
    let meta = Meta {
        request_id: ctx.request_id.clone(),
        account_id: who.account_id.clone(),
        api_key_id: who.key().map(|k| k.key_id.clone()),
        model,
        provider: targets[0].provider,
        started_ms: started,
        request_chars: bytes.len() as u64,
        markup_bps: markup_bps(ctx),
        reservation,
        leased: !stream,
        tokens_taken,
        timing: vec![("limits", t_reserve - t_limits), ("wallet-reserve", now_ms() - t_reserve)],
    };
    let asked = Asked { surface, body: &body, model, targets: &targets, stream, client_wants_usage };
    let result = forward(ctx, who, &asked, meta).await;
    match limits {
        Some(d) => crate::router::with_rate_headers(result, &d),
        None => result,
    }
}

/// What the client asked for, validated.
struct Asked<'a> {
    surface: Surface,
    body: &'a Value,
    model: &'static Model,
    /// Configured upstreams that can serve it, in failover order.
    targets: &'a [&'static Target],
    stream: bool,
    client_wants_usage: bool,
}

/// Tries the targets in order; whatever fails before an answer is served
/// gives the whole reservation back.
async fn forward(ctx: &Ctx, who: &Principal, asked: &Asked<'_>, mut meta: Meta) -> HandlerResult {
    let t_upstream = now_ms();
    let outcome = attempt_all(ctx, who, asked).await;
    meta.timing.push(("upstream", now_ms() - t_upstream));
    match outcome {
        Ok((resp, provider)) => {
            meta.provider = provider;
            if asked.stream {
                stream::respond(ctx, resp, asked.surface, meta, asked.client_wants_usage)
            } else {
                respond_whole(ctx, resp, asked.surface, meta).await
            }
        }
        Err(e) => {
            if meta.leased {
                crate::meter::release(&meta.reservation);
            } else {
                billing::release(&ctx.env, &meta.reservation).await;
            }
            meta.refund_tokens(&ctx.env, 0).await;
            Err(e)
        }
    }
}

async fn attempt_all(ctx: &Ctx, who: &Principal, asked: &Asked<'_>) -> Result<(Response, Provider), ApiError> {
    let Asked { surface, body, model, targets, stream, .. } = *asked;
    let config = &ctx.config();
    let timeout = first_byte_timeout(ctx);
    let mut last_error: Option<ApiError> = None;
    let mut all_rate_limited = true;
    for attempt in 0..MAX_ATTEMPTS {
        let target = targets[attempt % targets.len()];
        let provider = target.provider;
        if !breaker::allows(provider, now_ms()) {
            last_error.get_or_insert_with(|| ApiError::upstream(503, format!("{} is failing; its circuit is open.", provider.name())));
            all_rate_limited = false;
            continue;
        }
        if attempt > 0 {
            // Backoff before another try: 100 ms, 200 ms, …
            worker::Delay::from(Duration::from_millis(100 << (attempt - 1).min(4))).await;
        }
        let (base, mut key) = upstream::endpoint(config, provider).ok_or_else(ApiError::internal)?;
        if provider == Provider::OpenRouter {
            if let Some(own) = upstream_keys::for_account(ctx, &who.account_id).await? {
                key = own;
            }
        }
        let up_body = upstream_body(surface, body, model, target, stream)?;
        let path = upstream_path(surface, provider.dialect());
        let sent = upstream::post(provider, &base, &key, path, &up_body.to_string(), timeout).await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(f) => {
                breaker::failure(provider, now_ms());
                all_rate_limited = false;
                let (status, what) = match f {
                    Failure::Timeout => (504, "did not answer in time".to_string()),
                    Failure::Connect(e) => (502, format!("is unreachable ({})", e.chars().take(80).collect::<String>())),
                };
                logging::emit(
                    logging::warn("proxy.upstream_failed")
                        .field("request_id", ctx.request_id.as_str())
                        .field("provider", provider.name())
                        .field("status", status)
                        .field("attempt", attempt + 1),
                );
                last_error = Some(ApiError::new(
                    status,
                    "upstream_error",
                    if status == 504 { "upstream_timeout" } else { "upstream_error" },
                    format!("The upstream {} {what}.", provider.name()),
                ));
                continue;
            }
        };
        let status = resp.status_code();
        if retryable(status) {
            // A rate limit is not a dead upstream: it does not trip the breaker.
            if status != 429 {
                breaker::failure(provider, now_ms());
                all_rate_limited = false;
            }
            logging::emit(
                logging::warn("proxy.upstream_status")
                    .field("request_id", ctx.request_id.as_str())
                    .field("provider", provider.name())
                    .field("status", status)
                    .field("attempt", attempt + 1),
            );
            let retry_after = resp.headers().get("retry-after").ok().flatten().and_then(|v| v.parse::<u64>().ok());
            let mut e =
                ApiError::upstream(if status == 429 { 429 } else { 502 }, format!("The upstream {} answered {status}.", provider.name()));
            if status == 429 {
                e = ApiError::new(
                    429,
                    "rate_limit_error",
                    "upstream_rate_limited",
                    format!("The upstream {} is rate limiting; retry later.", provider.name()),
                );
                e.retry_after_secs = Some(retry_after.unwrap_or(1));
            }
            last_error = Some(e);
            let _ = resp.text().await;
            continue;
        }
        breaker::success(provider);
        if !(200..300).contains(&status) {
            // A 4xx that another upstream would answer the same way.
            let text = resp.text().await.unwrap_or_default();
            return Err(upstream_client_error(status, &text, provider));
        }
        return Ok((resp, provider));
    }
    let mut e = last_error.unwrap_or_else(|| ApiError::upstream(502, "No upstream could serve the request."));
    if !all_rate_limited && e.status == 429 {
        e = ApiError::upstream(502, "Every upstream failed or was rate limiting.");
    }
    Err(e)
}

/// A 4xx from the upstream, passed on in our shape. Its own credentials
/// being refused is our configuration's fault, not the client's: 502.
fn upstream_client_error(status: u16, text: &str, provider: Provider) -> ApiError {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let message = v["error"]["message"].as_str().unwrap_or("The upstream refused the request.").chars().take(500).collect::<String>();
    match status {
        401 | 403 => {
            logging::emit(logging::error("proxy.upstream_refused_credentials").field("provider", provider.name()).field("status", status));
            ApiError::upstream(502, "The upstream refused this gateway's credentials.")
        }
        404 => ApiError::new(404, "invalid_request_error", "model_not_found", message),
        413 => ApiError::new(413, "invalid_request_error", "payload_too_large", message),
        _ => ApiError::new(400, "invalid_request_error", "upstream_rejected", message),
    }
}

/// What the usage record needs to know about the request.
pub struct Meta {
    pub request_id: String,
    pub account_id: String,
    pub api_key_id: Option<String>,
    pub model: &'static Model,
    pub provider: Provider,
    pub started_ms: i64,
    pub request_chars: u64,
    pub markup_bps: u32,
    pub reservation: billing::Reservation,
    /// Reserved against this isolate's wallet lease (`crate::meter`), not
    /// held in the object.
    pub leased: bool,
    /// Tokens taken from the key's tokens-per-minute bucket up front.
    pub tokens_taken: u64,
    /// Where the time went, for the `Server-Timing` header.
    pub timing: Vec<(&'static str, i64)>,
}

impl Meta {
    /// Gives back what the tokens-per-minute bucket lent beyond `used`.
    pub async fn refund_tokens(&self, env: &worker::Env, used: u64) {
        if let Some(key_id) = &self.api_key_id {
            crate::auth::give_back_tokens(env, key_id, &self.reservation.plan, self.tokens_taken.saturating_sub(used)).await;
        }
    }

    pub fn cost(&self, u: &Usage) -> i64 {
        models::cost_micros(&self.model.price, u.input_tokens, u.cached_input_tokens, u.output_tokens, self.markup_bps)
    }

    /// The ledger row; `charged_micros` is what the wallet actually took,
    /// `reconcile` marks a charge the wallet's alarm made at the reserved amount.
    pub fn record(&self, u: &Usage, estimated: bool, status: u16, charged_micros: i64, reconcile: bool) -> UsageRecord {
        let now = now_ms();
        UsageRecord {
            request_id: self.request_id.clone(),
            account_id: self.account_id.clone(),
            api_key_id: self.api_key_id.clone(),
            model: self.model.id.to_string(),
            provider: self.provider.name().to_string(),
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_tokens: u.cached_input_tokens,
            cost_micros: charged_micros,
            latency_ms: now - self.started_ms,
            status,
            estimated,
            reconcile,
            created_at: now,
        }
    }
}

pub async fn write_record(db: &worker::D1Database, record: UsageRecord) {
    {
        let result = usage_repo::record(db, &record).await.map_err(|e| e.to_string());
        let line = match result {
            Ok(()) => logging::info("usage.recorded"),
            Err(e) => logging::error("usage.record_failed").field("detail", e),
        };
        logging::emit(
            line.field("request_id", record.request_id.as_str())
                .field("model", record.model.as_str())
                .field("input_tokens", record.input_tokens)
                .field("output_tokens", record.output_tokens)
                .field("cost_micros", record.cost_micros)
                .field("estimated", record.estimated),
        );
    }
}

pub fn set_common_headers(resp: &mut Response, meta: &Meta) {
    let h = resp.headers_mut();
    let _ = h.set("x-dexto-request-id", &meta.request_id);
    let _ = h.set("x-dex-provider", meta.provider.name());
    let timing: Vec<String> = meta.timing.iter().map(|(name, ms)| format!("{name};dur={ms}")).collect();
    let _ = h.set("server-timing", &timing.join(", "));
}

/// Remaining credit, and a warning once it is below $1.
pub fn set_balance_headers(resp: &mut Response, balance_micros: i64) {
    let h = resp.headers_mut();
    let _ = h.set("x-dexto-credits-remaining", &micros_to_usd_string(balance_micros));
    if balance_micros < dex_shared::wallet::LOW_BALANCE_THRESHOLD_MICROS {
        let _ = h.set("x-dexto-low-balance", "true");
    }
}

async fn respond_whole(ctx: &Ctx, mut resp: Response, surface: Surface, meta: Meta) -> HandlerResult {
    let text = resp.text().await.map_err(|_| ApiError::upstream(502, "The upstream answer broke off."))?;
    let upstream_json: Value =
        serde_json::from_str(&text).map_err(|_| ApiError::upstream(502, "The upstream answered something that is not JSON."))?;
    let from = meta.provider.dialect();
    let usage = match from {
        Dialect::OpenAi => translate::usage::from_openai(&upstream_json["usage"]),
        Dialect::Anthropic => translate::usage::from_anthropic(&upstream_json["usage"]),
    };
    let created = now_ms() / 1000;
    let mut answer = match (from, surface.dialect()) {
        (Dialect::Anthropic, Dialect::OpenAi) => translate::anthropic_message_to_openai_completion(
            &upstream_json,
            meta.model.id,
            &format!("chatcmpl-{}", meta.request_id),
            created,
        ),
        (Dialect::OpenAi, Dialect::Anthropic) => {
            translate::openai_completion_to_anthropic_message(&upstream_json, meta.model.id, &format!("msg_{}", meta.request_id))
        }
        _ => upstream_json,
    };
    // Clients see the model they asked for, not the upstream's name for it.
    if answer.get("model").is_some() {
        answer["model"] = json!(meta.model.id);
    }
    let (usage, estimated) = match usage {
        Some(u) => (u, false),
        None => (translate::usage::estimate(meta.request_chars, text.len() as u64), true),
    };
    let cost = meta.cost(&usage);
    let t_settle = now_ms();
    meta.refund_tokens(&ctx.env, usage.input_tokens + usage.output_tokens).await;
    let actual = dex_shared::wallet::Actual { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens, cost_micros: cost };
    let settled = crate::meter::settle(&ctx.env, &ctx.worker_ctx, &meta.reservation, &actual);
    let mut meta = meta;
    meta.timing.push(("wallet-settle", now_ms() - t_settle));
    let (charged, balance) = match settled {
        Some(s) => (s.charged_micros, Some(s.balance_micros)),
        None => {
            logging::emit(
                logging::error("wallet.settle_failed").field("request_id", meta.request_id.as_str()).field("detail", "no local hold"),
            );
            (cost, None)
        }
    };
    crate::meter::record(&ctx.env, &ctx.worker_ctx, meta.record(&usage, estimated, 200, charged, false));
    let mut out = Response::from_json(&answer).or_internal("serialise")?;
    set_common_headers(&mut out, &meta);
    let h = out.headers_mut();
    let _ = h.set("x-dexto-cost-usd", &micros_to_usd_string(charged));
    if let Some(b) = balance {
        set_balance_headers(&mut out, b);
    }
    Ok(out)
}

/// `GET /v1/models`: what we route, with prices. Public; cached in KV an hour.
pub async fn list_models(ctx: &Ctx) -> HandlerResult {
    const CACHE_KEY: &str = "models:catalogue:v1";
    let kv = ctx.env.kv("CACHE").or_internal("binding CACHE")?;
    let cached = kv.get(CACHE_KEY).text().await.ok().flatten();
    let body = match cached {
        Some(b) => b,
        None => {
            let data: Vec<Value> = models::MODELS
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id, "object": "model", "created": 1_735_689_600, "owned_by": m.owned_by,
                        "kind": m.kind, "aliases": m.aliases,
                        "pricing": {
                            "input_per_million_usd": micros_to_usd_string(m.price.input_per_m),
                            "output_per_million_usd": micros_to_usd_string(m.price.output_per_m),
                            "cached_input_per_million_usd": micros_to_usd_string(m.price.cached_input_per_m),
                        },
                        "providers": m.targets.iter().map(|t| t.provider.name()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let b = json!({"object": "list", "data": data}).to_string();
            if let Ok(put) = kv.put(CACHE_KEY, b.clone()) {
                let _ = put.expiration_ttl(3600).execute().await;
            }
            b
        }
    };
    let resp = Response::ok(body).or_internal("models")?;
    let _ = resp.headers().set("content-type", "application/json");
    let _ = resp.headers().set("cache-control", "public, max-age=3600");
    Ok(resp)
}
