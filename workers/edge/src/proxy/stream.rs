//! Streaming answers: upstream bytes pass through as they arrive (translated
//! event by event when dialects differ), usage is tracked on the way, and
//! the usage record is written when the stream ends — however it ends:
//! finished, upstream died mid-stream, or the client went away (the stream
//! is dropped, which fires the same signal).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use dex_shared::error::ApiError;
use dex_shared::models::Dialect;
use dex_shared::translate::sse::{self, SseParser};
use dex_shared::translate::usage::{self, Usage};
use dex_shared::translate::{AnthropicPassthrough, AnthropicToOpenAiStream, OpenAiPassthrough, OpenAiToAnthropicStream};
use futures_channel::oneshot;
use futures_util::Stream;
use worker::{ByteStream, Response};

use super::{billing, set_common_headers, Meta, Surface};
use crate::edge::{Ctx, HandlerResult, OrInternal};

enum Translator {
    /// OpenAI-dialect upstream to an OpenAI-dialect client.
    OpenAi(OpenAiPassthrough),
    /// Anthropic to Anthropic: bytes forwarded untouched, events only read.
    Anthropic(AnthropicPassthrough),
    AnthropicToOpenAi(AnthropicToOpenAiStream),
    OpenAiToAnthropic(OpenAiToAnthropicStream),
}

impl Translator {
    /// Bytes to send for one upstream event.
    fn push(&mut self, ev: &sse::SseEvent) -> String {
        match self {
            Translator::OpenAi(t) => t.push(ev),
            Translator::Anthropic(t) => t.push(ev),
            // An event that cannot be translated is dropped rather than
            // ending a stream the client is already reading.
            Translator::AnthropicToOpenAi(t) => t.push(ev).unwrap_or_default(),
            Translator::OpenAiToAnthropic(t) => t.push(ev).unwrap_or_default(),
        }
    }

    fn finish(&mut self) -> String {
        match self {
            Translator::OpenAiToAnthropic(t) => t.finish(),
            Translator::AnthropicToOpenAi(t) => t.finish(),
            _ => String::new(),
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Translator::OpenAi(t) => t.usage(),
            Translator::Anthropic(t) => t.usage(),
            Translator::AnthropicToOpenAi(t) => t.usage(),
            Translator::OpenAiToAnthropic(t) => t.usage(),
        }
    }
}

/// How the stream ended, for the usage record.
pub struct Ending {
    usage: Option<Usage>,
    response_chars: u64,
    status: u16,
    /// Set when the stream settled with the wallet itself (it ran to its end).
    settled: Option<Result<billing::Settled, String>>,
}

type SettleFuture = Pin<Box<dyn Future<Output = Result<billing::Settled, String>>>>;

struct ProxyStream {
    upstream: ByteStream,
    parser: SseParser,
    translator: Translator,
    /// Forward upstream bytes as they are (no re-encoding needed).
    raw: bool,
    dialect: Dialect,
    sent_chars: u64,
    done: bool,
    /// The upstream's `[DONE]`, held back until the billing chunk is out.
    held_done: bool,
    /// The usage-only chunk (OpenAI clients that asked for usage), held back
    /// so the billing fields join it instead of adding a chunk after it.
    held_usage: Option<serde_json::Value>,
    tail: String,
    status: u16,
    settling: Option<SettleFuture>,
    settle: Option<Box<dyn FnOnce(Usage) -> SettleFuture>>,
    request_chars: u64,
    on_end: Option<oneshot::Sender<Ending>>,
}

impl ProxyStream {
    fn end(&mut self, status: u16, settled: Option<Result<billing::Settled, String>>) {
        self.done = true;
        if let Some(tx) = self.on_end.take() {
            let _ = tx.send(Ending { usage: self.translator.usage(), response_chars: self.sent_chars, status, settled });
        }
    }

    fn usage_or_estimate(&self) -> Usage {
        self.translator.usage().unwrap_or_else(|| usage::estimate(self.request_chars, self.sent_chars))
    }

    /// The billing chunk: the cost and the remaining credit, in a field the
    /// official SDKs ignore (`dexto` on an empty-choices chunk for OpenAI
    /// clients, a `ping` event for Anthropic clients).
    fn billing_chunk(&mut self, s: &billing::Settled) -> String {
        let dexto = serde_json::json!({
            "cost_usd": dex_shared::money::micros_to_usd_string(s.charged_micros),
            "credits_remaining_usd": dex_shared::money::micros_to_usd_string(s.balance_micros),
            "low_balance": s.balance_micros < dex_shared::wallet::LOW_BALANCE_THRESHOLD_MICROS,
        });
        match self.dialect {
            Dialect::OpenAi => {
                let mut chunk =
                    self.held_usage.take().unwrap_or_else(|| serde_json::json!({"object": "chat.completion.chunk", "choices": []}));
                chunk["dexto"] = dexto;
                sse::encode_data(&chunk.to_string())
            }
            Dialect::Anthropic => sse::encode_event("ping", &serde_json::json!({"type": "ping", "dexto": dexto}).to_string()),
        }
    }

    /// Upstream finished (or broke): settle with the wallet, then send the
    /// held-back tail.
    fn begin_settle(&mut self, status: u16, tail: String) {
        self.status = status;
        self.tail = tail;
        let usage = self.usage_or_estimate();
        self.settling = self.settle.take().map(|f| f(usage));
    }
}

/// Takes `[DONE]` (and, for OpenAI clients, the usage-only chunk) out of
/// translated output, so the billing fields can ride on the last chunk.
fn hold_back_tail(out: &mut String, held_done: &mut bool, held_usage: &mut Option<serde_json::Value>) {
    if !out.contains(sse::DONE) && !out.contains("\"choices\":[]") {
        return;
    }
    let mut kept = String::with_capacity(out.len());
    for event in out.split_inclusive("\n\n") {
        if event == sse::DONE {
            *held_done = true;
            continue;
        }
        let data = event.strip_prefix("data: ").map(str::trim_end);
        if let Some(v) = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()) {
            if v["choices"].as_array().is_some_and(|c| c.is_empty()) && v["usage"].is_object() {
                *held_usage = Some(v);
                continue;
            }
        }
        kept.push_str(event);
    }
    *out = kept;
}

impl Stream for ProxyStream {
    type Item = worker::Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(fut) = this.settling.as_mut() {
            let settled = match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(s) => s,
            };
            this.settling = None;
            let mut out = std::mem::take(&mut this.tail);
            match &settled {
                Ok(s) => {
                    let chunk = this.billing_chunk(s);
                    out.push_str(&chunk);
                }
                Err(_) => {
                    if let Some(u) = this.held_usage.take() {
                        out.push_str(&sse::encode_data(&u.to_string()));
                    }
                }
            }
            if this.held_done {
                out.push_str(sse::DONE);
            }
            let status = this.status;
            this.end(status, Some(settled));
            return Poll::Ready(if out.is_empty() { None } else { Some(Ok(out.into_bytes())) });
        }
        loop {
            match Pin::new(&mut this.upstream).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bytes))) => {
                    let mut out = String::new();
                    for ev in this.parser.push(&bytes) {
                        out.push_str(&this.translator.push(&ev));
                    }
                    let chunk = if this.raw {
                        bytes
                    } else {
                        hold_back_tail(&mut out, &mut this.held_done, &mut this.held_usage);
                        out.into_bytes()
                    };
                    if chunk.is_empty() {
                        continue;
                    }
                    this.sent_chars += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(_))) => {
                    // The upstream died mid-stream: what was counted stands
                    // (or is estimated). It cannot be retried elsewhere once
                    // bytes were sent; the client sees the stream end.
                    let tail = if this.raw { String::new() } else { this.translator.finish() };
                    this.begin_settle(502, tail);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(None) => {
                    let mut tail = String::new();
                    if let Some(ev) = this.parser.finish() {
                        tail.push_str(&this.translator.push(&ev));
                    }
                    tail.push_str(&this.translator.finish());
                    if this.raw {
                        tail.clear();
                    } else {
                        hold_back_tail(&mut tail, &mut this.held_done, &mut this.held_usage);
                    }
                    this.begin_settle(200, tail);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for ProxyStream {
    fn drop(&mut self) {
        // The client went away before the end (or the end already fired);
        // the settle then happens in the Worker's `wait_until`.
        self.end(499, None);
    }
}

pub fn respond(ctx: &Ctx, mut upstream: Response, surface: Surface, meta: Meta, client_wants_usage: bool) -> HandlerResult {
    let from = meta.provider.dialect();
    let created = crate::logging::now_ms() / 1000;
    let id_openai = format!("chatcmpl-{}", meta.request_id);
    let (translator, raw) = match (from, surface.dialect()) {
        (Dialect::OpenAi, Dialect::OpenAi) => (Translator::OpenAi(OpenAiPassthrough::new(!client_wants_usage)), false),
        (Dialect::Anthropic, Dialect::Anthropic) => (Translator::Anthropic(AnthropicPassthrough::new()), true),
        (Dialect::Anthropic, Dialect::OpenAi) => {
            (Translator::AnthropicToOpenAi(AnthropicToOpenAiStream::new(&id_openai, meta.model.id, created, client_wants_usage)), false)
        }
        (Dialect::OpenAi, Dialect::Anthropic) => {
            (Translator::OpenAiToAnthropic(OpenAiToAnthropicStream::new(format!("msg_{}", meta.request_id), meta.model.id)), false)
        }
    };
    let body = upstream.stream().map_err(|_| ApiError::upstream(502, "The upstream sent no body."))?;
    let (tx, rx) = oneshot::channel::<Ending>();
    let env = ctx.env.clone();
    let reservation = meta.reservation.clone();
    let price = meta.model.price;
    let markup = meta.markup_bps;
    let settle: Box<dyn FnOnce(Usage) -> SettleFuture> = Box::new(move |u: Usage| {
        Box::pin(async move {
            let cost = dex_shared::models::cost_micros(&price, u.input_tokens, u.cached_input_tokens, u.output_tokens, markup);
            billing::settle(&env, &reservation, &u, cost).await
        }) as SettleFuture
    });
    let proxy = ProxyStream {
        upstream: body,
        parser: SseParser::new(),
        translator,
        raw,
        dialect: surface.dialect(),
        sent_chars: 0,
        done: false,
        held_done: false,
        held_usage: None,
        tail: String::new(),
        status: 200,
        settling: None,
        settle: Some(settle),
        request_chars: meta.request_chars,
        on_end: Some(tx),
    };
    let mut resp = Response::from_stream(proxy).or_internal("stream response")?;
    {
        let h = resp.headers_mut();
        let _ = h.set("content-type", "text/event-stream; charset=utf-8");
        let _ = h.set("cache-control", "no-cache");
        let _ = h.set("x-accel-buffering", "no");
    }
    set_common_headers(&mut resp, &meta);
    // Headers leave before the cost is known: they carry what was available
    // once this request's hold was placed; the final chunk carries the rest.
    super::set_balance_headers(&mut resp, meta.reservation.available_after_micros);

    let db = ctx.db();
    let env = ctx.env.clone();
    ctx.worker_ctx.wait_until(async move {
        let Ok(end) = rx.await else { return };
        let (u, estimated) = match end.usage {
            Some(u) => (u, false),
            None => (usage::estimate(meta.request_chars, end.response_chars), true),
        };
        let cost = meta.cost(&u);
        // The client left before the end: settle here instead.
        let settled = match end.settled {
            Some(s) => s,
            None => billing::settle(&env, &meta.reservation, &u, cost).await,
        };
        let reconcile = settled.as_ref().map(|s| s.expired).unwrap_or(false);
        let charged = match settled {
            Ok(s) => {
                billing::after_settle(&env, &meta.account_id, &s).await;
                s.charged_micros
            }
            Err(e) => {
                crate::logging::emit(
                    crate::logging::error("wallet.settle_failed").field("request_id", meta.request_id.as_str()).field("detail", e),
                );
                cost
            }
        };
        meta.refund_tokens(&env, u.input_tokens + u.output_tokens).await;
        if let Ok(db) = db {
            super::write_record(&db, meta.record(&u, estimated, end.status, charged, reconcile)).await;
        }
    });
    Ok(resp)
}
