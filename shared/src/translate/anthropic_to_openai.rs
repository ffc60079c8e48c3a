//! Everything whose input is Anthropic-shaped, producing the OpenAI shape:
//! a Messages request for an OpenAI-compatible upstream, and a message,
//! error body or event stream from Anthropic for an OpenAI client.

use serde_json::{json, Map, Value};

use super::sse::{encode_data, SseEvent, DONE};
use super::usage::{self, Usage, UsageTracker};
use super::{anthropic_error_type_for_status, anthropic_stop_to_openai_finish, str_field, u64_field, TranslateError};

fn err(message: impl Into<String>) -> TranslateError {
    TranslateError::new(message)
}

/// Translates an Anthropic Messages request into an OpenAI Chat Completions
/// request for `upstream_model`. A streaming request also asks for
/// `stream_options.include_usage` so usage can be recorded. `max_tokens` is
/// sent as `max_tokens` (OpenRouter's name; OpenAI reasoning models want
/// `max_completion_tokens`, which the caller may rename).
pub fn anthropic_to_openai_chat(req: &Value, upstream_model: &str) -> Result<Value, TranslateError> {
    if !req.is_object() {
        return Err(err("The request body must be a JSON object."));
    }
    let messages = req.get("messages").and_then(Value::as_array).ok_or_else(|| err("`messages` must be an array."))?;
    let mut out: Vec<Value> = Vec::new();
    if let Some(system) = system_text(req.get("system"))? {
        out.push(json!({"role": "system", "content": system}));
    }
    for (i, m) in messages.iter().enumerate() {
        match str_field(m, "role") {
            Some("user") => user_messages(m.get("content"), i, &mut out)?,
            Some("assistant") => {
                if let Some(msg) = assistant_message(m.get("content"), i)? {
                    out.push(msg);
                }
            }
            Some(other) => return Err(err(format!("messages.{i}.role: unexpected role {other:?}; use \"user\" or \"assistant\"."))),
            None => return Err(err(format!("messages.{i}.role is missing."))),
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(upstream_model));
    body.insert("messages".into(), Value::Array(out));
    if let Some(n) = u64_field(req, "max_tokens") {
        body.insert("max_tokens".into(), json!(n));
    }
    for key in ["temperature", "top_p"] {
        if let Some(x) = req.get(key).and_then(Value::as_f64) {
            body.insert(key.into(), json!(x));
        }
    }
    if let Some(stops) = req.get("stop_sequences").and_then(Value::as_array).filter(|s| !s.is_empty()) {
        let stops: Vec<&str> = stops.iter().filter_map(Value::as_str).collect();
        body.insert("stop".into(), json!(stops));
    }
    let tools = tools(req)?;
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = req.get("tool_choice").filter(|t| t.is_object()) {
            let choice = match str_field(tc, "type") {
                Some("auto") => json!("auto"),
                Some("any") => json!("required"),
                Some("none") => json!("none"),
                Some("tool") => {
                    let name = str_field(tc, "name").ok_or_else(|| err("tool_choice.name is required for type \"tool\"."))?;
                    json!({"type": "function", "function": {"name": name}})
                }
                _ => return Err(err("tool_choice.type must be \"auto\", \"any\", \"tool\" or \"none\".")),
            };
            body.insert("tool_choice".into(), choice);
            if tc.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
                body.insert("parallel_tool_calls".into(), json!(false));
            }
        }
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(user) = req.get("metadata").and_then(|m| str_field(m, "user_id")).filter(|u| !u.is_empty()) {
        body.insert("user".into(), json!(user));
    }
    Ok(Value::Object(body))
}

fn system_text(system: Option<&Value>) -> Result<Option<String>, TranslateError> {
    match system {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.is_empty()).then(|| s.clone())),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.iter().enumerate() {
                match (str_field(b, "type"), str_field(b, "text")) {
                    (Some("text"), Some(t)) => texts.push(t),
                    _ => return Err(err(format!("system.{j}: only text blocks are supported in `system`."))),
                }
            }
            let joined = texts.join("\n\n");
            Ok((!joined.is_empty()).then_some(joined))
        }
        Some(_) => Err(err("`system` must be a string or an array of text blocks.")),
    }
}

/// One string for a single text part, else the array of parts.
fn openai_content(parts: Vec<Value>) -> Value {
    if let [only] = parts.as_slice() {
        if str_field(only, "type") == Some("text") {
            if let Some(t) = str_field(only, "text") {
                return json!(t);
            }
        }
    }
    Value::Array(parts)
}

/// An Anthropic image/document/text block as an OpenAI user content part.
fn media_part(block: &Value, at: &str) -> Result<Value, TranslateError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let kind = str_field(block, "type").unwrap_or("");
    match (kind, str_field(source, "type")) {
        ("image", Some("base64")) => {
            let media_type = str_field(source, "media_type").unwrap_or("image/png");
            let data = str_field(source, "data").ok_or_else(|| err(format!("{at}.source.data is missing.")))?;
            Ok(json!({"type": "image_url", "image_url": {"url": format!("data:{media_type};base64,{data}")}}))
        }
        ("image", Some("url")) => {
            let url = str_field(source, "url").ok_or_else(|| err(format!("{at}.source.url is missing.")))?;
            Ok(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        ("document", Some("base64")) => {
            let media_type = str_field(source, "media_type").unwrap_or("application/pdf");
            let data = str_field(source, "data").ok_or_else(|| err(format!("{at}.source.data is missing.")))?;
            let filename = str_field(block, "title").unwrap_or("document.pdf");
            Ok(json!({"type": "file", "file": {"filename": filename, "file_data": format!("data:{media_type};base64,{data}")}}))
        }
        ("document", Some("text")) => {
            let data = str_field(source, "data").ok_or_else(|| err(format!("{at}.source.data is missing.")))?;
            Ok(json!({"type": "text", "text": data}))
        }
        _ => Err(err(format!("{at}: this {kind} source type is not supported for this model."))),
    }
}

fn user_messages(content: Option<&Value>, i: usize, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let blocks = match content {
        Some(Value::String(s)) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => return Err(err(format!("messages.{i}.content must be a string or an array of content blocks."))),
    };
    let mut tool_messages = Vec::new();
    // Images returned inside tool results: OpenAI tool messages are text only,
    // so they follow the tool messages as user content.
    let mut tool_media = Vec::new();
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("messages.{i}.content.{j}");
        match str_field(b, "type") {
            Some("text") => {
                let t = str_field(b, "text").ok_or_else(|| err(format!("{at}.text must be a string.")))?;
                parts.push(json!({"type": "text", "text": t}));
            }
            Some("image") | Some("document") => parts.push(media_part(b, &at)?),
            Some("tool_result") => {
                let id = str_field(b, "tool_use_id").ok_or_else(|| err(format!("{at}.tool_use_id is missing.")))?;
                let mut texts = Vec::new();
                match b.get("content") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => texts.push(json!({"type": "text", "text": s})),
                    Some(Value::Array(inner)) => {
                        for (k, ib) in inner.iter().enumerate() {
                            let at = format!("{at}.content.{k}");
                            match str_field(ib, "type") {
                                Some("text") => texts.push(json!({"type": "text", "text": str_field(ib, "text").unwrap_or("")})),
                                Some("image") | Some("document") => tool_media.push(media_part(ib, &at)?),
                                other => {
                                    return Err(err(format!("{at}: unsupported block type {:?} in tool_result.", other.unwrap_or(""))))
                                }
                            }
                        }
                    }
                    Some(_) => return Err(err(format!("{at}.content must be a string or an array."))),
                }
                let content = if texts.is_empty() { json!("") } else { openai_content(texts) };
                tool_messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            other => return Err(err(format!("{at}: unsupported content block type {:?}.", other.unwrap_or("")))),
        }
    }
    out.extend(tool_messages);
    tool_media.extend(parts);
    if !tool_media.is_empty() {
        out.push(json!({"role": "user", "content": openai_content(tool_media)}));
    }
    Ok(())
}

fn assistant_message(content: Option<&Value>, i: usize) -> Result<Option<Value>, TranslateError> {
    let blocks = match content {
        Some(Value::String(s)) => return Ok(Some(json!({"role": "assistant", "content": s}))),
        Some(Value::Array(blocks)) => blocks,
        _ => return Err(err(format!("messages.{i}.content must be a string or an array of content blocks."))),
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("messages.{i}.content.{j}");
        match str_field(b, "type") {
            Some("text") => text.push_str(str_field(b, "text").unwrap_or("")),
            Some("tool_use") => {
                let id = str_field(b, "id").ok_or_else(|| err(format!("{at}.id is missing.")))?;
                let name = str_field(b, "name").ok_or_else(|| err(format!("{at}.name is missing.")))?;
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": input.to_string()}}));
            }
            // Reasoning from an earlier Anthropic turn means nothing to another model.
            Some("thinking") | Some("redacted_thinking") => {}
            other => return Err(err(format!("{at}: unsupported content block type {:?}.", other.unwrap_or("")))),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(None);
    }
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        if let Some(obj) = msg.as_object_mut() {
            obj.insert("tool_calls".into(), Value::Array(calls));
        }
    }
    Ok(Some(msg))
}

fn tools(req: &Value) -> Result<Vec<Value>, TranslateError> {
    let Some(list) = req.get("tools").filter(|t| !t.is_null()) else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or_else(|| err("`tools` must be an array."))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        if let Some(t) = str_field(tool, "type").filter(|t| *t != "custom") {
            return Err(err(format!("tools.{i}: server tool {t:?} is not supported for this model.")));
        }
        let name = str_field(tool, "name").ok_or_else(|| err(format!("tools.{i}.name is missing.")))?;
        let mut f = Map::new();
        f.insert("name".into(), json!(name));
        if let Some(d) = str_field(tool, "description") {
            f.insert("description".into(), json!(d));
        }
        f.insert("parameters".into(), tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})));
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(out)
}

/// A non-streaming Anthropic `message` → OpenAI `chat.completion`.
pub fn anthropic_message_to_openai_completion(msg: &Value, client_model: &str, id: &str, created: i64) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in msg.get("content").and_then(Value::as_array).into_iter().flatten() {
        match str_field(b, "type") {
            Some("text") => text.push_str(str_field(b, "text").unwrap_or("")),
            Some("tool_use") => {
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": str_field(b, "id").unwrap_or(""),
                    "type": "function",
                    "function": {"name": str_field(b, "name").unwrap_or(""), "arguments": input.to_string()},
                }));
            }
            _ => {}
        }
    }
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !calls.is_empty() {
        if let Some(obj) = message.as_object_mut() {
            obj.insert("tool_calls".into(), Value::Array(calls));
        }
    }
    let finish = str_field(msg, "stop_reason").map(anthropic_stop_to_openai_finish).unwrap_or("stop");
    let usage = msg.get("usage").and_then(usage::from_anthropic).unwrap_or_default();
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": client_model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage.to_openai_json(),
    })
}

/// OpenAI `(type, code)` for an Anthropic error type, in the gateway's own
/// vocabulary (see `crate::error::ApiError`).
fn openai_error_kind(anthropic_type: &str) -> (&'static str, &'static str) {
    match anthropic_type {
        "authentication_error" => ("authentication_error", "invalid_api_key"),
        "permission_error" => ("permission_error", "permission_denied"),
        "not_found_error" => ("invalid_request_error", "not_found"),
        "request_too_large" => ("invalid_request_error", "payload_too_large"),
        "rate_limit_error" => ("rate_limit_error", "rate_limit_exceeded"),
        "overloaded_error" => ("server_error", "overloaded"),
        "api_error" => ("server_error", "upstream_error"),
        "invalid_request_error" => ("invalid_request_error", "invalid_request"),
        _ => ("server_error", "upstream_error"),
    }
}

/// An Anthropic error body (`{"type":"error","error":{"type","message"}}`) →
/// OpenAI's `{"error":{"message","type","param","code"}}`.
pub fn anthropic_error_to_openai(status: u16, body: &Value) -> Value {
    let inner = body.get("error").unwrap_or(body);
    let anthropic_type = str_field(inner, "type").filter(|t| *t != "error").unwrap_or_else(|| anthropic_error_type_for_status(status));
    let message = str_field(inner, "message")
        .or_else(|| inner.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("The upstream provider returned HTTP {status}."));
    let (kind, code) = openai_error_kind(anthropic_type);
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// Anthropic Messages events → OpenAI `chat.completion.chunk`s, for an OpenAI
/// client. Usage is always tracked; it is sent (as the trailing `choices: []`
/// chunk) only when `include_usage`.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    /// Anthropic content-block index → OpenAI tool-call index.
    tools: Vec<(u64, u64)>,
    finish_sent: bool,
    done: bool,
    tracker: UsageTracker,
    output_chars: u64,
}

impl AnthropicToOpenAiStream {
    pub fn new(id: impl Into<String>, client_model: impl Into<String>, created: i64, include_usage: bool) -> Self {
        Self {
            id: id.into(),
            model: client_model.into(),
            created,
            include_usage,
            tools: Vec::new(),
            finish_sent: false,
            done: false,
            tracker: UsageTracker::new(),
            output_chars: 0,
        }
    }

    /// Feeds one upstream event; returns the SSE text for the client.
    pub fn push(&mut self, ev: &SseEvent) -> Result<String, TranslateError> {
        let mut out = String::new();
        if self.done || ev.data.trim().is_empty() {
            return Ok(out);
        }
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| err(format!("The upstream sent an invalid stream event: {e}")))?;
        let ty = str_field(&v, "type").or(ev.event.as_deref()).unwrap_or("");
        match ty {
            "message_start" => {
                self.tracker.observe_anthropic_event(ty, &v);
                self.chunk(&mut out, json!({"role": "assistant", "content": ""}), None);
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match str_field(block, "type") {
                    Some("tool_use") => {
                        let oa_index = self.tools.len() as u64;
                        self.tools.push((u64_field(&v, "index").unwrap_or(0), oa_index));
                        let call = json!({"index": oa_index, "id": str_field(block, "id").unwrap_or(""), "type": "function",
                            "function": {"name": str_field(block, "name").unwrap_or(""), "arguments": ""}});
                        self.chunk(&mut out, json!({"tool_calls": [call]}), None);
                    }
                    Some("text") => {
                        if let Some(t) = str_field(block, "text").filter(|t| !t.is_empty()) {
                            self.text(&mut out, t);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match str_field(delta, "type") {
                    Some("text_delta") => {
                        if let Some(t) = str_field(delta, "text").filter(|t| !t.is_empty()) {
                            self.text(&mut out, t);
                        }
                    }
                    Some("input_json_delta") => {
                        let block = u64_field(&v, "index").unwrap_or(0);
                        let oa_index = self.tools.iter().find(|(b, _)| *b == block).map(|(_, o)| *o);
                        if let (Some(oa_index), Some(partial)) = (oa_index, str_field(delta, "partial_json").filter(|p| !p.is_empty())) {
                            self.output_chars += partial.chars().count() as u64;
                            self.chunk(&mut out, json!({"tool_calls": [{"index": oa_index, "function": {"arguments": partial}}]}), None);
                        }
                    }
                    // thinking_delta, signature_delta, citations_delta: no OpenAI equivalent.
                    _ => {}
                }
            }
            "message_delta" => {
                self.tracker.observe_anthropic_event(ty, &v);
                if let Some(stop) = v.get("delta").and_then(|d| str_field(d, "stop_reason")) {
                    if !self.finish_sent {
                        self.finish_sent = true;
                        self.chunk(&mut out, json!({}), Some(anthropic_stop_to_openai_finish(stop)));
                    }
                }
            }
            "message_stop" => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    let finish = if self.tools.is_empty() { "stop" } else { "tool_calls" };
                    self.chunk(&mut out, json!({}), Some(finish));
                }
                self.close(&mut out);
            }
            "error" => {
                let body = anthropic_error_to_openai(500, &v);
                out.push_str(&encode_data(&body.to_string()));
                self.done = true;
            }
            // ping, content_block_stop and event types added later.
            _ => {}
        }
        Ok(out)
    }

    /// The upstream ended. If the model had finished but `message_stop` never
    /// came, sends the usage chunk and `[DONE]`; a stream cut mid-answer gets
    /// nothing, so the client can tell it was truncated.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        if !self.done && self.finish_sent {
            self.close(&mut out);
        }
        out
    }

    pub fn usage(&self) -> Option<Usage> {
        self.tracker.usage()
    }

    /// Characters of text and tool arguments produced, for [`usage::estimate`].
    pub fn output_chars(&self) -> u64 {
        self.output_chars
    }

    fn close(&mut self, out: &mut String) {
        if self.include_usage {
            let usage = self.tracker.usage().unwrap_or_default();
            let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage.to_openai_json()});
            out.push_str(&encode_data(&chunk.to_string()));
        }
        out.push_str(DONE);
        self.done = true;
    }

    fn text(&mut self, out: &mut String, text: &str) {
        self.output_chars += text.chars().count() as u64;
        self.chunk(out, json!({ "content": text }), None);
    }

    fn chunk(&self, out: &mut String, delta: Value, finish: Option<&str>) {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            if let Some(obj) = chunk.as_object_mut() {
                obj.insert("usage".into(), Value::Null);
            }
        }
        out.push_str(&encode_data(&chunk.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::openai_to_anthropic::openai_chat_to_anthropic;
    use crate::translate::sse::SseParser;

    fn translate(req: Value) -> Value {
        match anthropic_to_openai_chat(&req, "openai/gpt-4o") {
            Ok(v) => v,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    #[test]
    fn basic_request_maps_every_field() {
        let got = translate(json!({
            "model": "dex/gpt",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Hello, world"}],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["\n\nHuman:"],
            "stream": true,
            "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 1024}
        }));
        assert_eq!(
            got,
            json!({
                "model": "openai/gpt-4o",
                "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello, world"}],
                "max_tokens": 1024,
                "temperature": 0.5,
                "top_p": 0.9,
                "stop": ["\n\nHuman:"],
                "stream": true,
                "stream_options": {"include_usage": true},
                "user": "u-1"
            })
        );
    }

    #[test]
    fn tool_use_and_tool_results_become_tool_calls_and_tool_messages() {
        let got = translate(json!({
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [{"type": "text", "text": "noon"},
                        {"type": "image", "source": {"type": "url", "url": "https://x/clock.png"}}], "is_error": false},
                    {"type": "text", "text": "And tomorrow?"}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        }));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_01B", "content": "noon"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/clock.png"}}, {"type": "text", "text": "And tomorrow?"}]}
            ])
        );
        assert_eq!(
            got["tools"],
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
            ])
        );
        assert_eq!(got["tool_choice"], "required");
        assert_eq!(got["parallel_tool_calls"], false);
    }

    #[test]
    fn tool_choice_variants_and_rejections() {
        let with = |tc: Value| {
            translate(
                json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": tc}),
            )
        };
        assert_eq!(with(json!({"type": "auto"}))["tool_choice"], "auto");
        assert_eq!(with(json!({"type": "none"}))["tool_choice"], "none");
        assert_eq!(with(json!({"type": "tool", "name": "f"}))["tool_choice"], json!({"type": "function", "function": {"name": "f"}}));
        for bad in [
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            json!({"messages": [{"role": "system", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "file", "file_id": "f"}}]}]}),
            json!({"messages": "x"}),
        ] {
            assert!(anthropic_to_openai_chat(&bad, "m").is_err(), "{bad}");
        }
    }

    #[test]
    fn openai_request_round_trip_preserves_meaning() {
        let original = json!({
            "model": "dex/claude",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "assistant", "content": "It is 18C."},
                {"role": "user", "content": [{"type": "text", "text": "Thanks"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "max_tokens": 300,
            "temperature": 0.2,
            "stop": ["###"],
            "user": "u-7"
        });
        let anthropic = openai_chat_to_anthropic(&original, "claude", 1024);
        assert!(anthropic.is_ok(), "{anthropic:?}");
        let back = translate(anthropic.unwrap_or_default());
        assert_eq!(
            back,
            json!({
                "model": "openai/gpt-4o",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                    {"role": "assistant", "content": "It is 18C."},
                    {"role": "user", "content": [{"type": "text", "text": "Thanks"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
                ],
                "tools": original["tools"].clone(),
                "tool_choice": original["tool_choice"].clone(),
                "max_tokens": 300,
                "temperature": 0.2,
                "stop": ["###"],
                "user": "u-7"
            })
        );
    }

    #[test]
    fn anthropic_request_round_trip_preserves_meaning() {
        let original = json!({
            "model": "claude",
            "max_tokens": 512,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Calling."},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"}]}
            ],
            "tools": [{"name": "f", "description": "F", "input_schema": {"type": "object", "properties": {"a": {"type": "array"}}}}],
            "tool_choice": {"type": "any"},
            "stop_sequences": ["X"],
            "temperature": 0.3
        });
        let openai = translate(original.clone());
        let back = openai_chat_to_anthropic(&openai, "claude", 1);
        assert_eq!(
            back,
            Ok(json!({
                "model": "claude",
                "max_tokens": 512,
                "system": "Be brief.",
                "messages": original["messages"].clone(),
                "tools": original["tools"].clone(),
                "tool_choice": {"type": "any"},
                "stop_sequences": ["X"],
                "temperature": 0.3
            }))
        );
    }

    #[test]
    fn message_to_completion_text_and_usage() {
        let msg = json!({
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hi! My name is Claude."}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000,
                "service_tier": "standard"}
        });
        assert_eq!(
            anthropic_message_to_openai_completion(&msg, "dex/claude", "chatcmpl-x", 1700000000),
            json!({
                "id": "chatcmpl-x", "object": "chat.completion", "created": 1700000000, "model": "dex/claude",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": null},
                    "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3195, "completion_tokens": 503, "total_tokens": 3698, "prompt_tokens_details": {"cached_tokens": 1000}}
            })
        );
    }

    #[test]
    fn message_to_completion_tool_use_and_finish_reasons() {
        let msg = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"location": "San Francisco, CA"}}],
            "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 5}
        });
        let got = anthropic_message_to_openai_completion(&msg, "m", "c", 1);
        assert_eq!(got["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            got["choices"][0]["message"]["tool_calls"],
            json!([{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\"}"}}])
        );
        assert_eq!(got["choices"][0]["finish_reason"], "tool_calls");
        for (stop, finish) in [("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter")] {
            let m =
                json!({"content": [{"type": "text", "text": "x"}], "stop_reason": stop, "usage": {"input_tokens": 1, "output_tokens": 1}});
            assert_eq!(anthropic_message_to_openai_completion(&m, "m", "c", 1)["choices"][0]["finish_reason"], finish);
        }
    }

    #[test]
    fn error_bodies_map_to_openai() {
        let body = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"});
        assert_eq!(
            anthropic_error_to_openai(529, &body),
            json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
        );
        let body = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}});
        assert_eq!(anthropic_error_to_openai(400, &body)["error"]["type"], "invalid_request_error");
        let body = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}});
        assert_eq!(anthropic_error_to_openai(429, &body)["error"]["code"], "rate_limit_exceeded");
        // Unparsable upstream body: the status decides.
        assert_eq!(anthropic_error_to_openai(401, &Value::Null)["error"]["type"], "authentication_error");
        assert_eq!(anthropic_error_to_openai(404, &json!("nope"))["error"]["message"], "nope");
    }

    const ANTHROPIC_TEXT_STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":10,\"cache_read_input_tokens\":1800,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"! ünïcödé\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null,\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    /// Runs an Anthropic stream (pushed in 7-byte pieces) through the
    /// translator; returns the client-side data payloads.
    fn run(stream: &str, t: &mut AnthropicToOpenAiStream) -> Vec<String> {
        let mut parser = SseParser::new();
        let mut text = String::new();
        for piece in stream.as_bytes().chunks(7) {
            for ev in parser.push(piece) {
                match t.push(&ev) {
                    Ok(s) => text.push_str(&s),
                    Err(e) => panic!("translate error: {e}"),
                }
            }
        }
        text.push_str(&t.finish());
        SseParser::new()
            .push(text.as_bytes())
            .into_iter()
            .map(|e| {
                assert_eq!(e.event, None, "OpenAI streams carry no event names");
                e.data
            })
            .collect()
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or(Value::Null)
    }

    #[test]
    fn anthropic_text_stream_with_usage() {
        let mut t = AnthropicToOpenAiStream::new("chatcmpl-1", "dex/claude", 1700000000, true);
        let data = run(ANTHROPIC_TEXT_STREAM, &mut t);
        assert_eq!(data.len(), 6, "{data:#?}");
        assert_eq!(
            parse(&data[0]),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "dex/claude",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}], "usage": null})
        );
        assert_eq!(parse(&data[1])["choices"][0]["delta"], json!({"content": "Hello"}));
        assert_eq!(parse(&data[2])["choices"][0]["delta"], json!({"content": "! ünïcödé"}));
        assert_eq!(parse(&data[3])["choices"][0], json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}));
        assert_eq!(
            parse(&data[4]),
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "dex/claude", "choices": [],
                "usage": {"prompt_tokens": 1835, "completion_tokens": 15, "total_tokens": 1850, "prompt_tokens_details": {"cached_tokens": 1800}}})
        );
        assert_eq!(data[5], "[DONE]");
        assert_eq!(
            t.usage(),
            Some(Usage { input_tokens: 1835, output_tokens: 15, cached_input_tokens: 1800, cache_creation_input_tokens: 10 })
        );
        assert_eq!(t.output_chars(), 14);
    }

    #[test]
    fn anthropic_text_stream_without_usage_still_tracks_it() {
        let mut t = AnthropicToOpenAiStream::new("chatcmpl-1", "dex/claude", 1, false);
        let data = run(ANTHROPIC_TEXT_STREAM, &mut t);
        assert_eq!(data.len(), 5, "{data:#?}");
        assert!(data[..4].iter().all(|d| parse(d).get("usage").is_none()));
        assert_eq!(parse(&data[3])["choices"][0]["finish_reason"], "stop");
        assert_eq!(data[4], "[DONE]");
        assert_eq!(t.usage().map(|u| u.output_tokens), Some(15));
    }

    #[test]
    fn anthropic_tool_use_stream_becomes_tool_call_deltas() {
        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\n",
            "data: {\"type\": \"ping\"}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, let's check the weather.\"}}\n\n",
            "event: content_block_stop\n",
            "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"San Francisco, CA\\\"}\"}}\n\n",
            "event: content_block_stop\n",
            "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"get_time\",\"input\":{}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
            "event: content_block_stop\n",
            "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n",
            "event: message_stop\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let mut t = AnthropicToOpenAiStream::new("chatcmpl-2", "m", 1, false);
        let data = run(stream, &mut t);
        let deltas: Vec<Value> = data.iter().filter(|d| *d != "[DONE]").map(|d| parse(d)["choices"][0]["delta"].clone()).collect();
        assert_eq!(
            deltas,
            vec![
                json!({"role": "assistant", "content": ""}),
                json!({"content": "Okay, let's check the weather."}),
                json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Francisco, CA\"}"}}]}),
                json!({"tool_calls": [{"index": 1, "id": "toolu_02", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                json!({}),
            ]
        );
        assert_eq!(parse(&data[7])["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(t.usage().map(|u| (u.input_tokens, u.output_tokens)), Some((472, 89)));
    }

    #[test]
    fn anthropic_error_event_becomes_openai_error_line() {
        let mut t = AnthropicToOpenAiStream::new("c", "m", 1, true);
        let ev = SseEvent::new(Some("error"), "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}");
        let out = t.push(&ev).unwrap_or_default();
        let evs = SseParser::new().push(out.as_bytes());
        assert_eq!(evs.len(), 1);
        assert_eq!(
            parse(&evs[0].data),
            json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
        );
        assert_eq!(t.finish(), "");
        assert!(t.push(&SseEvent::new(Some("ping"), "{\"type\":\"ping\"}")).is_ok_and(|s| s.is_empty()));
    }

    #[test]
    fn truncated_anthropic_stream_gets_no_done_and_bad_json_errors() {
        let mut t = AnthropicToOpenAiStream::new("c", "m", 1, false);
        let start = "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}";
        assert!(t.push(&SseEvent::new(Some("message_start"), start)).is_ok());
        assert_eq!(t.finish(), "");
        assert!(t.push(&SseEvent::new(Some("content_block_delta"), "{not json")).is_err());
        // Finished but message_stop lost: finish() closes with [DONE].
        let mut t = AnthropicToOpenAiStream::new("c", "m", 1, false);
        let delta = "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":4}}";
        let out = t.push(&SseEvent::new(Some("message_delta"), delta)).unwrap_or_default();
        assert!(out.contains("\"finish_reason\":\"length\""));
        assert_eq!(t.finish(), DONE);
    }
}
