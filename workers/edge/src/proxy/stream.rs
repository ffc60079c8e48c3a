//! Streaming answers: upstream bytes pass through as they arrive (translated
//! event by event when dialects differ), usage is tracked on the way, and
//! the usage record is written when the stream ends — however it ends:
//! finished, upstream died mid-stream, or the client went away (the stream
//! is dropped, which fires the same signal).

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

use super::{set_common_headers, Meta, Surface};
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
}

struct ProxyStream {
    upstream: ByteStream,
    parser: SseParser,
    translator: Translator,
    /// Forward upstream bytes as they are (no re-encoding needed).
    raw: bool,
    sent_chars: u64,
    done: bool,
    on_end: Option<oneshot::Sender<Ending>>,
}

impl ProxyStream {
    fn end(&mut self, status: u16) {
        self.done = true;
        if let Some(tx) = self.on_end.take() {
            let _ = tx.send(Ending { usage: self.translator.usage(), response_chars: self.sent_chars, status });
        }
    }
}

impl Stream for ProxyStream {
    type Item = worker::Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.upstream).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bytes))) => {
                    let mut out = String::new();
                    for ev in this.parser.push(&bytes) {
                        out.push_str(&this.translator.push(&ev));
                    }
                    let chunk = if this.raw { bytes } else { out.into_bytes() };
                    if chunk.is_empty() {
                        continue;
                    }
                    this.sent_chars += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(_))) => {
                    // The upstream died mid-stream: what was counted stands.
                    // The client gets a clean end of what arrived; it cannot
                    // be retried elsewhere once bytes were sent.
                    let tail = this.translator.finish();
                    this.end(502);
                    return Poll::Ready(if tail.is_empty() || this.raw { None } else { Some(Ok(tail.into_bytes())) });
                }
                Poll::Ready(None) => {
                    let mut tail = String::new();
                    if let Some(ev) = this.parser.finish() {
                        tail.push_str(&this.translator.push(&ev));
                    }
                    tail.push_str(&this.translator.finish());
                    this.end(200);
                    return Poll::Ready(if tail.is_empty() || this.raw { None } else { Some(Ok(tail.into_bytes())) });
                }
            }
        }
    }
}

impl Drop for ProxyStream {
    fn drop(&mut self) {
        // The client disconnected before the end (or the end already fired).
        self.end(499);
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
    let proxy = ProxyStream { upstream: body, parser: SseParser::new(), translator, raw, sent_chars: 0, done: false, on_end: Some(tx) };
    let mut resp = Response::from_stream(proxy).or_internal("stream response")?;
    {
        let h = resp.headers_mut();
        let _ = h.set("content-type", "text/event-stream; charset=utf-8");
        let _ = h.set("cache-control", "no-cache");
        let _ = h.set("x-accel-buffering", "no");
    }
    set_common_headers(&mut resp, &meta);

    let request_chars = meta.request_chars;
    let pending = async move {
        match rx.await {
            Ok(end) => {
                let (u, estimated) = match end.usage {
                    Some(u) => (u, false),
                    None => (usage::estimate(request_chars, end.response_chars), true),
                };
                Some(meta.record(&u, estimated, end.status))
            }
            Err(_) => None,
        }
    };
    defer_record(ctx, pending);
    Ok(resp)
}

fn defer_record<F>(ctx: &Ctx, pending: F)
where
    F: std::future::Future<Output = Option<crate::repositories::usage::UsageRecord>> + 'static,
{
    let db = ctx.db();
    ctx.worker_ctx.wait_until(async move {
        if let (Some(record), Ok(db)) = (pending.await, db) {
            super::write_record(&db, record).await;
        }
    });
}
