//! Everything whose input is OpenAI-shaped, producing the Anthropic shape:
//! a Chat Completions request for an Anthropic upstream, and a completion,
//! error body or chunk stream from an OpenAI-compatible upstream for an
//! Anthropic client.

use serde_json::{json, Map, Value};

use super::sse::{encode_event, SseEvent};
use super::usage::{self, UsageTracker};
use super::{anthropic_error_type_for_status, openai_finish_to_anthropic_stop, parse_data_url, str_field, u64_field, TranslateError};

fn err(message: impl Into<String>) -> TranslateError {
    TranslateError::new(message)
}

/// Translates an OpenAI Chat Completions request into an Anthropic Messages
/// request for `upstream_model`. See the module docs of [`super`] for the
/// fields dropped or rejected.
pub fn openai_chat_to_anthropic(req: &Value, upstream_model: &str, default_max_tokens: u64) -> Result<Value, TranslateError> {
    if !req.is_object() {
        return Err(err("The request body must be a JSON object."));
    }
    for legacy in ["functions", "function_call"] {
        if req.get(legacy).is_some_and(|v| !v.is_null()) {
            return Err(err(format!("`{legacy}` is not supported; use `tools` and `tool_choice`.")));
        }
    }
    if u64_field(req, "n").is_some_and(|n| n > 1) {
        return Err(err("`n` greater than 1 is not supported for this model."));
    }
    let messages = req.get("messages").and_then(Value::as_array).ok_or_else(|| err("`messages` must be an array."))?;

    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = str_field(m, "role").ok_or_else(|| err(format!("messages[{i}].role is missing.")))?;
        match role {
            "system" | "developer" => system.extend(system_blocks(m.get("content"), i)?),
            "user" => push_merged(&mut out, "user", user_blocks(m.get("content"), &format!("messages[{i}]"))?),
            "assistant" => push_merged(&mut out, "assistant", assistant_blocks(m, i)?),
            "tool" => push_merged(&mut out, "user", vec![tool_result_block(m, i)?]),
            "function" => return Err(err(format!("messages[{i}]: role \"function\" is not supported; use \"tool\" messages."))),
            other => return Err(err(format!("messages[{i}]: unknown role {other:?}."))),
        }
    }
    if out.is_empty() {
        return Err(err("`messages` must contain at least one non-empty user or assistant message."));
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(upstream_model));
    body.insert("max_tokens".into(), json!(max_tokens(req, default_max_tokens)?));
    if !system.is_empty() {
        body.insert("system".into(), system_value(system));
    }
    let messages: Vec<Value> = out
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Anthropic wants tool results before any other content of the turn.
                blocks.sort_by_key(|b| str_field(b, "type") != Some("tool_result"));
            }
            json!({"role": role, "content": blocks})
        })
        .collect();
    body.insert("messages".into(), Value::Array(messages));

    let tools = tools(req)?;
    let has_tools = !tools.is_empty();
    if has_tools {
        body.insert("tools".into(), Value::Array(tools));
        let parallel = req.get("parallel_tool_calls").and_then(Value::as_bool);
        if let Some(choice) = tool_choice(req.get("tool_choice"), parallel)? {
            body.insert("tool_choice".into(), choice);
        }
    }

    if let Some(t) = number_field(req, "temperature")? {
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = number_field(req, "top_p")? {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(k) = u64_field(req, "top_k") {
        body.insert("top_k".into(), json!(k));
    }
    if let Some(stop) = stop_sequences(req.get("stop"))? {
        body.insert("stop_sequences".into(), stop);
    }
    if let Some(stream) = req.get("stream").and_then(Value::as_bool) {
        body.insert("stream".into(), json!(stream));
    }
    if let Some(user) = str_field(req, "user").or_else(|| str_field(req, "safety_identifier")).filter(|u| !u.is_empty()) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    Ok(Value::Object(body))
}

fn push_merged(out: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match out.last_mut() {
        Some((last, existing)) if *last == role => existing.extend(blocks),
        _ => out.push((role, blocks)),
    }
}

fn max_tokens(req: &Value, default: u64) -> Result<u64, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        match req.get(key) {
            None | Some(Value::Null) => continue,
            Some(_) => {
                return match u64_field(req, key) {
                    Some(n) if n > 0 => Ok(n),
                    _ => Err(err(format!("`{key}` must be a positive integer."))),
                }
            }
        }
    }
    Ok(default)
}

fn number_field(req: &Value, key: &str) -> Result<Option<f64>, TranslateError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| err(format!("`{key}` must be a number."))),
    }
}

fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    match stop {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(json!([s]))),
        Some(Value::Array(items)) => {
            let seqs = items
                .iter()
                .map(|s| s.as_str().ok_or_else(|| err("`stop` must be a string or an array of strings.")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((!seqs.is_empty()).then(|| json!(seqs)))
        }
        Some(_) => Err(err("`stop` must be a string or an array of strings.")),
    }
}

/// Copies `cache_control` (an OpenRouter/Anthropic extension clients put on
/// content parts) onto the translated block.
fn keep_cache_control(mut block: Value, part: &Value) -> Value {
    if let (Some(cc), Some(obj)) = (part.get("cache_control").filter(|c| !c.is_null()), block.as_object_mut()) {
        obj.insert("cache_control".into(), cc.clone());
    }
    block
}

fn system_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(if s.is_empty() { Vec::new() } else { vec![json!({"type": "text", "text": s})] }),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for part in parts {
                match (str_field(part, "type"), str_field(part, "text")) {
                    (Some("text"), Some(t)) if !t.is_empty() => blocks.push(keep_cache_control(json!({"type": "text", "text": t}), part)),
                    (Some("text"), Some(_)) => {}
                    _ => return Err(err(format!("messages[{i}]: system and developer messages may only contain text parts."))),
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(err(format!("messages[{i}].content must be a string or an array of content parts."))),
    }
}

/// A single string when no block carries `cache_control`, else the block list.
fn system_value(blocks: Vec<Value>) -> Value {
    if blocks.iter().any(|b| b.get("cache_control").is_some()) {
        return Value::Array(blocks);
    }
    let texts: Vec<&str> = blocks.iter().filter_map(|b| str_field(b, "text")).collect();
    Value::String(texts.join("\n\n"))
}

/// User (and tool-result) content: text, images, PDF files.
fn user_blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(if s.is_empty() { Vec::new() } else { vec![json!({"type": "text", "text": s})] }),
        Some(Value::Array(parts)) => parts,
        Some(_) => return Err(err(format!("{at}.content must be a string or an array of content parts."))),
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let block = match str_field(part, "type") {
            Some("text") => match str_field(part, "text") {
                Some("") => continue,
                Some(t) => json!({"type": "text", "text": t}),
                None => return Err(err(format!("{at}.content[{j}].text must be a string."))),
            },
            Some("image_url") => {
                let url = part.get("image_url").and_then(|u| u.as_str().or_else(|| str_field(u, "url")));
                let url = url.ok_or_else(|| err(format!("{at}.content[{j}].image_url.url is missing.")))?;
                image_block(url)
                    .ok_or_else(|| err(format!("{at}.content[{j}]: image URLs must be https://, http:// or data:<type>;base64,.")))?
            }
            Some("file") => file_block(part.get("file").unwrap_or(&Value::Null)).ok_or_else(|| {
                err(format!("{at}.content[{j}]: only inline PDF files (file_data: data:application/pdf;base64,...) are supported."))
            })?,
            Some("input_audio") => return Err(err(format!("{at}.content[{j}]: audio input is not supported for this model."))),
            other => return Err(err(format!("{at}.content[{j}]: unsupported content part type {:?}.", other.unwrap_or("")))),
        };
        blocks.push(keep_cache_control(block, part));
    }
    Ok(blocks)
}

fn image_block(url: &str) -> Option<Value> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Some(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Some(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    None
}

fn file_block(file: &Value) -> Option<Value> {
    let (media_type, data) = parse_data_url(str_field(file, "file_data")?)?;
    if media_type != "application/pdf" {
        return None;
    }
    let mut block = json!({"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}});
    if let (Some(name), Some(obj)) = (str_field(file, "filename"), block.as_object_mut()) {
        obj.insert("title".into(), json!(name));
    }
    Some(block)
}

fn assistant_blocks(m: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    if m.get("function_call").is_some_and(|f| !f.is_null()) {
        return Err(err(format!("messages[{i}].function_call is not supported; use tool_calls.")));
    }
    let mut blocks = Vec::new();
    match m.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                blocks.push(json!({"type": "text", "text": s}));
            }
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let text = match str_field(part, "type") {
                    Some("text") => str_field(part, "text"),
                    Some("refusal") => str_field(part, "refusal"),
                    _ => {
                        return Err(err(format!("messages[{i}].content[{j}]: assistant messages may only contain text or refusal parts.")))
                    }
                };
                match text {
                    Some("") => {}
                    Some(t) => blocks.push(keep_cache_control(json!({"type": "text", "text": t}), part)),
                    None => return Err(err(format!("messages[{i}].content[{j}] has no text."))),
                }
            }
        }
        Some(_) => return Err(err(format!("messages[{i}].content must be a string or an array of content parts."))),
    }
    if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
        let calls = calls.as_array().ok_or_else(|| err(format!("messages[{i}].tool_calls must be an array.")))?;
        for (j, call) in calls.iter().enumerate() {
            let at = format!("messages[{i}].tool_calls[{j}]");
            if let Some(t) = str_field(call, "type").filter(|t| *t != "function") {
                return Err(err(format!("{at}: tool call type {t:?} is not supported.")));
            }
            let id = sanitize_tool_id(str_field(call, "id").unwrap_or("")).ok_or_else(|| err(format!("{at}.id is missing.")))?;
            let function = call.get("function").unwrap_or(&Value::Null);
            let name =
                str_field(function, "name").filter(|n| !n.is_empty()).ok_or_else(|| err(format!("{at}.function.name is missing.")))?;
            let input = parse_arguments(function.get("arguments"), &at)?;
            blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
    }
    Ok(blocks)
}

/// Tool-call `arguments`: a JSON string encoding an object ("" means `{}`).
fn parse_arguments(args: Option<&Value>, at: &str) -> Result<Value, TranslateError> {
    let parsed = match args {
        None | Some(Value::Null) => return Ok(json!({})),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(json!({})),
        Some(Value::String(s)) => {
            serde_json::from_str::<Value>(s).map_err(|e| err(format!("{at}.function.arguments is not valid JSON: {e}")))?
        }
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(err(format!("{at}.function.arguments must be a JSON string."))),
    };
    if !parsed.is_object() {
        return Err(err(format!("{at}.function.arguments must encode a JSON object.")));
    }
    Ok(parsed)
}

/// Anthropic tool ids must match `^[a-zA-Z0-9_-]+$`; other characters become
/// `_` (deterministically, so a `tool_use` and its `tool_result` still match).
fn sanitize_tool_id(id: &str) -> Option<String> {
    if id.is_empty() {
        return None;
    }
    Some(id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect())
}

fn tool_result_block(m: &Value, i: usize) -> Result<Value, TranslateError> {
    let at = format!("messages[{i}]");
    let id = sanitize_tool_id(str_field(m, "tool_call_id").unwrap_or("")).ok_or_else(|| err(format!("{at}.tool_call_id is missing.")))?;
    let content = match m.get("content") {
        None | Some(Value::Null) => json!(""),
        Some(Value::String(s)) => json!(s),
        Some(other) => Value::Array(user_blocks(Some(other), &at)?),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

fn tools(req: &Value) -> Result<Vec<Value>, TranslateError> {
    let Some(list) = req.get("tools").filter(|t| !t.is_null()) else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or_else(|| err("`tools` must be an array."))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        if let Some(t) = str_field(tool, "type").filter(|t| *t != "function") {
            return Err(err(format!("tools[{i}]: tool type {t:?} is not supported; only \"function\" tools are.")));
        }
        let f = tool.get("function").ok_or_else(|| err(format!("tools[{i}].function is missing.")))?;
        let name = str_field(f, "name").filter(|n| !n.is_empty()).ok_or_else(|| err(format!("tools[{i}].function.name is missing.")))?;
        let mut schema = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => return Err(err(format!("tools[{i}].function.parameters must be a JSON Schema object."))),
        };
        if let Some(obj) = schema.as_object_mut() {
            obj.entry("type").or_insert_with(|| json!("object"));
        }
        let mut t = Map::new();
        t.insert("name".into(), json!(name));
        if let Some(d) = str_field(f, "description") {
            t.insert("description".into(), json!(d));
        }
        t.insert("input_schema".into(), schema);
        out.push(keep_cache_control(Value::Object(t), tool));
    }
    Ok(out)
}

fn tool_choice(choice: Option<&Value>, parallel: Option<bool>) -> Result<Option<Value>, TranslateError> {
    let mut out =
        match choice {
            None | Some(Value::Null) => {
                if parallel == Some(false) {
                    json!({"type": "auto"})
                } else {
                    return Ok(None);
                }
            }
            Some(Value::String(s)) => match s.as_str() {
                "auto" => json!({"type": "auto"}),
                "none" => return Ok(Some(json!({"type": "none"}))),
                "required" => json!({"type": "any"}),
                other => return Err(err(format!("`tool_choice` {other:?} is not supported."))),
            },
            Some(obj @ Value::Object(_)) => {
                let name = obj.get("function").and_then(|f| str_field(f, "name")).filter(|n| !n.is_empty());
                match (str_field(obj, "type"), name) {
                    (Some("function") | None, Some(name)) => json!({"type": "tool", "name": name}),
                    _ => return Err(err(
                        "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}.",
                    )),
                }
            }
            Some(_) => return Err(err("`tool_choice` must be a string or an object.")),
        };
    if parallel == Some(false) {
        if let Some(obj) = out.as_object_mut() {
            obj.insert("disable_parallel_tool_use".into(), json!(true));
        }
    }
    Ok(Some(out))
}

/// A non-streaming OpenAI `chat.completion` → Anthropic `message`.
///
/// Tool-call `arguments` that are not a JSON object (models occasionally emit
/// broken JSON) are kept as `{"arguments": "<raw string>"}` rather than lost.
pub fn openai_completion_to_anthropic_message(c: &Value, client_model: &str, id: &str) -> Value {
    let choice = c.get("choices").and_then(Value::as_array).and_then(|cs| cs.first()).unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let text = match msg.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| str_field(p, "text")).collect(),
        _ => String::new(),
    };
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(refusal) = str_field(msg, "refusal").filter(|r| !r.is_empty()) {
        content.push(json!({"type": "text", "text": refusal}));
    }
    let mut has_tools = false;
    for call in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let f = call.get("function").unwrap_or(&Value::Null);
        let input = lenient_arguments(f.get("arguments"));
        content.push(json!({
            "type": "tool_use",
            "id": str_field(call, "id").unwrap_or(""),
            "name": str_field(f, "name").unwrap_or(""),
            "input": input,
        }));
        has_tools = true;
    }
    let stop_reason = stop_reason(str_field(choice, "finish_reason"), has_tools);
    let usage = c.get("usage").and_then(usage::from_openai).unwrap_or_default();
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": client_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage.to_anthropic_json(),
    })
}

/// Some providers answer `stop` after tool calls; Anthropic clients only run
/// tools on `tool_use`, so tool calls win over a plain stop.
fn stop_reason(finish: Option<&str>, has_tools: bool) -> &'static str {
    let mapped = finish.map(openai_finish_to_anthropic_stop).unwrap_or("end_turn");
    if has_tools && mapped == "end_turn" {
        "tool_use"
    } else {
        mapped
    }
}

fn lenient_arguments(args: Option<&Value>) -> Value {
    match args {
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({ "arguments": s }),
        },
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    }
}

/// An OpenAI-shaped error body (`{"error":{"message","type","code"}}`, or
/// OpenRouter's numeric `code`) → Anthropic's `{"type":"error","error":{...}}`.
/// The Anthropic `type` follows the HTTP status.
pub fn openai_error_to_anthropic(status: u16, body: &Value) -> Value {
    let inner = body.get("error").unwrap_or(body);
    let message = str_field(inner, "message")
        .or_else(|| inner.as_str())
        .or_else(|| str_field(body, "message"))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("The upstream provider returned HTTP {status}."));
    // Mid-stream errors arrive under a 200; OpenRouter puts the real status in `code`.
    let status = if status < 400 { u64_field(inner, "code").and_then(|c| u16::try_from(c).ok()).unwrap_or(500) } else { status };
    json!({"type": "error", "error": {"type": anthropic_error_type_for_status(status), "message": message}})
}

/// OpenAI chunk stream (from an OpenAI-compatible upstream) → Anthropic
/// Messages events, for an Anthropic client.
///
/// `message_delta`/`message_stop` wait until the finish reason *and* either
/// usage or `[DONE]` have arrived, so the trailing usage-only chunk
/// (`choices: []`) still lands in `message_delta.usage`. Tool-call argument
/// deltas for a tool whose block was already closed (interleaved parallel
/// calls, which OpenAI does not send) are still emitted for its index.
#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    id: String,
    model: String,
    started: bool,
    /// Anthropic index of the open content block, and whether it is text.
    open: Option<(usize, bool)>,
    next_index: usize,
    /// OpenAI tool-call index → Anthropic block index.
    tools: Vec<(u64, usize)>,
    stop_reason: Option<&'static str>,
    usage_after_finish: bool,
    finished: bool,
    tracker: UsageTracker,
    output_chars: u64,
}

impl OpenAiToAnthropicStream {
    pub fn new(id: impl Into<String>, client_model: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            model: client_model.into(),
            started: false,
            open: None,
            next_index: 0,
            tools: Vec::new(),
            stop_reason: None,
            usage_after_finish: false,
            finished: false,
            tracker: UsageTracker::new(),
            output_chars: 0,
        }
    }

    /// Feeds one upstream event (`[DONE]` included); returns the SSE text for
    /// the client. An unparsable chunk is an error (the caller should end the
    /// stream with an `error` event).
    pub fn push(&mut self, ev: &SseEvent) -> Result<String, TranslateError> {
        let mut out = String::new();
        if self.finished {
            return Ok(out);
        }
        if ev.is_done() {
            self.finalize(&mut out);
            return Ok(out);
        }
        if ev.data.trim().is_empty() {
            return Ok(out);
        }
        let chunk: Value = serde_json::from_str(&ev.data).map_err(|e| err(format!("The upstream sent an invalid stream chunk: {e}")))?;
        if let Some(e) = chunk.get("error").filter(|e| !e.is_null()) {
            let body = openai_error_to_anthropic(200, &json!({ "error": e }));
            out.push_str(&encode_event("error", &body.to_string()));
            self.finished = true;
            return Ok(out);
        }
        self.tracker.observe_openai_chunk(&chunk);
        self.ensure_started(&mut out);

        let choices = chunk.get("choices").and_then(Value::as_array);
        let choice = choices.and_then(|cs| cs.iter().find(|c| u64_field(c, "index").unwrap_or(0) == 0));
        if let Some(choice) = choice {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            for key in ["content", "refusal"] {
                if let Some(text) = str_field(delta, key).filter(|t| !t.is_empty()) {
                    self.text(&mut out, text);
                }
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (pos, call) in calls.iter().enumerate() {
                    self.tool_delta(&mut out, call, pos as u64);
                }
            }
            if let Some(finish) = str_field(choice, "finish_reason") {
                self.stop_reason = Some(stop_reason(Some(finish), !self.tools.is_empty()));
                self.close_block(&mut out);
            }
        }
        if self.stop_reason.is_some() && chunk.get("usage").is_some_and(|u| !u.is_null()) {
            self.usage_after_finish = true;
        }
        if self.stop_reason.is_some() && self.usage_after_finish {
            self.finalize(&mut out);
        }
        Ok(out)
    }

    /// The upstream ended (cleanly or not): closes whatever is open so the
    /// client sees a well-formed message. Empty once already finished.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        if !self.finished {
            self.finalize(&mut out);
        }
        out
    }

    pub fn usage(&self) -> Option<usage::Usage> {
        self.tracker.usage()
    }

    /// Characters of text and tool arguments produced, for [`usage::estimate`].
    pub fn output_chars(&self) -> u64 {
        self.output_chars
    }

    fn emit(out: &mut String, value: Value) {
        let name = str_field(&value, "type").unwrap_or("message").to_owned();
        out.push_str(&encode_event(&name, &value.to_string()));
    }

    fn ensure_started(&mut self, out: &mut String) {
        if self.started {
            return;
        }
        self.started = true;
        let mut usage = self.tracker.usage().unwrap_or_default().to_anthropic_json();
        if let Some(u) = usage.as_object_mut() {
            u.insert("output_tokens".into(), json!(0));
        }
        Self::emit(
            out,
            json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": usage,
            }}),
        );
    }

    fn open_block(&mut self, out: &mut String, is_text: bool, content_block: Value) -> usize {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, is_text));
        Self::emit(out, json!({"type": "content_block_start", "index": index, "content_block": content_block}));
        index
    }

    fn close_block(&mut self, out: &mut String) {
        if let Some((index, _)) = self.open.take() {
            Self::emit(out, json!({"type": "content_block_stop", "index": index}));
        }
    }

    fn text(&mut self, out: &mut String, text: &str) {
        let index = match self.open {
            Some((i, true)) => i,
            _ => self.open_block(out, true, json!({"type": "text", "text": ""})),
        };
        self.output_chars += text.chars().count() as u64;
        Self::emit(out, json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}));
    }

    fn tool_delta(&mut self, out: &mut String, call: &Value, pos: u64) {
        let oa_index = u64_field(call, "index").unwrap_or(pos);
        let f = call.get("function").unwrap_or(&Value::Null);
        let index = match self.tools.iter().find(|(o, _)| *o == oa_index) {
            Some((_, a)) => *a,
            None => {
                let id = str_field(call, "id")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("call_{}_{oa_index}", self.id));
                let name = str_field(f, "name").unwrap_or("");
                let a = self.open_block(out, false, json!({"type": "tool_use", "id": id, "name": name, "input": {}}));
                self.tools.push((oa_index, a));
                a
            }
        };
        if let Some(args) = str_field(f, "arguments").filter(|a| !a.is_empty()) {
            self.output_chars += args.chars().count() as u64;
            Self::emit(
                out,
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": args}}),
            );
        }
    }

    fn finalize(&mut self, out: &mut String) {
        self.ensure_started(out);
        self.close_block(out);
        let stop = self.stop_reason.unwrap_or(if self.tools.is_empty() { "end_turn" } else { "tool_use" });
        let usage = self.tracker.usage().unwrap_or_default();
        Self::emit(
            out,
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": usage.to_anthropic_json()}),
        );
        Self::emit(out, json!({"type": "message_stop"}));
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::sse::SseParser;

    fn translate(req: Value) -> Value {
        match openai_chat_to_anthropic(&req, "claude-sonnet-4-5", 4096) {
            Ok(v) => v,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    #[test]
    fn basic_request_maps_every_field() {
        let got = translate(json!({
            "model": "dex/claude",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Bonjour"}
            ],
            "max_completion_tokens": 256,
            "temperature": 1.7,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "user-42",
            "frequency_penalty": 0.5,
            "presence_penalty": 0.1,
            "seed": 7,
            "logprobs": false,
            "response_format": {"type": "text"},
            "n": 1
        }));
        assert_eq!(
            got,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 256,
                "system": "You are terse.\n\nAnswer in French.",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Bonjour"}]}],
                "temperature": 1.0,
                "top_p": 0.9,
                "stop_sequences": ["END"],
                "stream": true,
                "metadata": {"user_id": "user-42"}
            })
        );
    }

    #[test]
    fn default_max_tokens_and_stop_array_and_negative_temperature() {
        let got =
            translate(json!({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b"], "temperature": -1, "max_tokens": null}));
        assert_eq!(got["max_tokens"], 4096);
        assert_eq!(got["stop_sequences"], json!(["a", "b"]));
        assert_eq!(got["temperature"], 0.0);
        assert!(got.get("system").is_none());
        assert_eq!(translate(json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 99}))["max_tokens"], 99);
    }

    #[test]
    fn images_become_base64_or_url_blocks() {
        let got = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/cat.jpg"}},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
        ]}]}));
        assert_eq!(
            got["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/cat.jpg"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "a.pdf"}
            ])
        );
    }

    #[test]
    fn bad_image_and_audio_are_rejected() {
        let bad_img = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]});
        assert!(openai_chat_to_anthropic(&bad_img, "m", 1).is_err());
        let audio =
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]});
        assert!(openai_chat_to_anthropic(&audio, "m", 1).is_err());
    }

    #[test]
    fn tool_calls_and_merged_tool_results() {
        let got = translate(json!({
            "messages": [
                {"role": "user", "content": "Weather in Paris and Tokyo?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_abc", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_def", "content": [{"type": "text", "text": "25C"}]},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": true}}],
            "tool_choice": "required",
            "parallel_tool_calls": false
        }));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Tokyo?"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_def", "name": "get_weather", "input": {"city": "Tokyo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_abc", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_def", "content": [{"type": "text", "text": "25C"}]},
                    {"type": "text", "text": "Thanks"}
                ]}
            ])
        );
        assert_eq!(
            got["tools"],
            json!([{"name": "get_weather", "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
        );
        assert_eq!(got["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
    }

    #[test]
    fn tool_choice_variants() {
        let base = |tc: Value| {
            translate(
                json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": tc}),
            )
        };
        assert_eq!(base(json!("auto"))["tool_choice"], json!({"type": "auto"}));
        assert_eq!(base(json!("none"))["tool_choice"], json!({"type": "none"}));
        assert_eq!(base(json!({"type": "function", "function": {"name": "f"}}))["tool_choice"], json!({"type": "tool", "name": "f"}));
        assert_eq!(base(json!("auto"))["tools"][0]["input_schema"], json!({"type": "object", "properties": {}}));
        // No tools: tool_choice is dropped rather than sent alone.
        let got = translate(json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}));
        assert!(got.get("tool_choice").is_none() && got.get("tools").is_none());
    }

    #[test]
    fn invalid_tool_arguments_are_an_error() {
        let req = json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": "}}]}
        ]});
        let e = openai_chat_to_anthropic(&req, "m", 1);
        assert!(matches!(&e, Err(TranslateError { message }) if message.contains("not valid JSON")), "{e:?}");
        let req = json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}]}
        ]});
        assert!(openai_chat_to_anthropic(&req, "m", 1).is_err());
    }

    #[test]
    fn empty_arguments_mean_empty_object_and_ids_are_sanitized() {
        let got = translate(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call:1.2", "type": "function", "function": {"name": "f", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call:1.2", "content": "ok"}
        ]}));
        assert_eq!(got["messages"][1]["content"], json!([{"type": "tool_use", "id": "call_1_2", "name": "f", "input": {}}]));
        assert_eq!(got["messages"][2]["content"][0]["tool_use_id"], "call_1_2");
    }

    #[test]
    fn consecutive_same_role_messages_merge() {
        let got = translate(json!({"messages": [
            {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"}, {"role": "assistant", "content": [{"type": "text", "text": "d"}]}
        ]}));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]}
            ])
        );
    }

    #[test]
    fn cache_control_is_kept_and_system_becomes_blocks() {
        let got = translate(json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": "big doc", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}]}
        ]}));
        assert_eq!(got["system"], json!([{"type": "text", "text": "big doc", "cache_control": {"type": "ephemeral"}}]));
        assert_eq!(got["messages"][0]["content"][0]["cache_control"], json!({"type": "ephemeral"}));
    }

    #[test]
    fn unconvertible_requests_are_rejected() {
        for bad in [
            json!([]),
            json!({"messages": "hi"}),
            json!({"messages": []}),
            json!({"messages": [{"role": "system", "content": "only system"}]}),
            json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
            json!({"messages": [{"role": "user", "content": "x"}], "functions": [{"name": "f"}]}),
            json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}),
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            json!({"messages": [{"role": "user", "content": "x"}], "stop": [1]}),
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "custom", "custom": {"name": "g"}}]}),
        ] {
            assert!(openai_chat_to_anthropic(&bad, "m", 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn completion_to_message_text() {
        let completion = json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion", "created": 1741569952,
            "model": "gpt-4.1-2025-04-14",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": null, "annotations": []},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default"
        });
        assert_eq!(
            openai_completion_to_anthropic_message(&completion, "dex/gpt", "msg_1"),
            json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "dex/gpt",
                "content": [{"type": "text", "text": "Hello! How can I help?"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 19, "output_tokens": 10, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
            })
        );
    }

    #[test]
    fn completion_to_message_tool_calls_and_cache() {
        let completion = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "broken", "arguments": "{oops"}}
            ]}}],
            "usage": {"prompt_tokens": 2006, "completion_tokens": 30, "total_tokens": 2036, "prompt_tokens_details": {"cached_tokens": 1920}}
        });
        let got = openai_completion_to_anthropic_message(&completion, "m", "msg_2");
        assert_eq!(
            got["content"],
            json!([
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "broken", "input": {"arguments": "{oops"}}
            ])
        );
        assert_eq!(got["stop_reason"], "tool_use");
        assert_eq!(
            got["usage"],
            json!({"input_tokens": 86, "output_tokens": 30, "cache_read_input_tokens": 1920, "cache_creation_input_tokens": 0})
        );
        for (finish, stop) in [("length", "max_tokens"), ("content_filter", "refusal"), ("stop", "end_turn")] {
            let c = json!({"choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "x"}}]});
            assert_eq!(openai_completion_to_anthropic_message(&c, "m", "i")["stop_reason"], stop);
        }
    }

    #[test]
    fn error_bodies_map_to_anthropic() {
        let openai = json!({"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
        assert_eq!(
            openai_error_to_anthropic(429, &openai),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached for gpt-4o"}})
        );
        assert_eq!(openai_error_to_anthropic(401, &json!({"error": {"message": "bad key"}}))["error"]["type"], "authentication_error");
        assert_eq!(openai_error_to_anthropic(400, &json!({"error": {"message": "bad"}}))["error"]["type"], "invalid_request_error");
        assert_eq!(openai_error_to_anthropic(404, &json!({}))["error"]["type"], "not_found_error");
        assert_eq!(openai_error_to_anthropic(502, &Value::Null)["error"]["message"], "The upstream provider returned HTTP 502.");
        assert_eq!(openai_error_to_anthropic(503, &json!({"error": {"message": "x"}}))["error"]["type"], "overloaded_error");
        // OpenRouter mid-stream error: numeric code carries the status.
        let or = json!({"error": {"code": 429, "message": "Provider rate limited"}});
        assert_eq!(openai_error_to_anthropic(200, &or)["error"]["type"], "rate_limit_error");
    }

    fn run(stream: &str, translator: &mut OpenAiToAnthropicStream) -> Vec<(String, Value)> {
        let mut parser = SseParser::new();
        let mut text = String::new();
        for ev in parser.push(stream.as_bytes()) {
            match translator.push(&ev) {
                Ok(s) => text.push_str(&s),
                Err(e) => panic!("translate error: {e}"),
            }
        }
        text.push_str(&translator.finish());
        let mut out_parser = SseParser::new();
        out_parser
            .push(text.as_bytes())
            .into_iter()
            .map(|e| {
                let v: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                assert_eq!(e.event.as_deref(), str_field(&v, "type"), "event name matches data.type");
                (e.event.unwrap_or_default(), v)
            })
            .collect()
    }

    const OPENAI_TOOL_STREAM: &str = concat!(
        ": OPENROUTER PROCESSING\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me check.\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_A\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_B\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":40,\"total_tokens\":160,\"prompt_tokens_details\":{\"cached_tokens\":100}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn openai_tool_stream_with_trailing_usage_becomes_anthropic_events() {
        let mut t = OpenAiToAnthropicStream::new("msg_9", "dex/gpt");
        let events = run(OPENAI_TOOL_STREAM, &mut t);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(events[0].1["message"]["id"], "msg_9");
        assert_eq!(events[0].1["message"]["model"], "dex/gpt");
        assert_eq!(events[0].1["message"]["content"], json!([]));
        assert_eq!(events[1].1, json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}));
        assert_eq!(events[2].1["delta"], json!({"type": "text_delta", "text": "Let me check."}));
        assert_eq!(
            events[4].1,
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}})
        );
        let args: String = events[5..7].iter().filter_map(|(_, v)| v["delta"]["partial_json"].as_str()).collect();
        assert_eq!(args, "{\"city\":\"Paris\"}");
        assert_eq!(events[8].1["content_block"]["id"], "call_B");
        assert_eq!(events[8].1["index"], 2);
        assert_eq!(events[9].1["delta"], json!({"type": "input_json_delta", "partial_json": "{}"}));
        assert_eq!(
            events[11].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"input_tokens": 20, "output_tokens": 40, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}})
        );
        assert_eq!(t.usage().map(|u| (u.input_tokens, u.output_tokens, u.cached_input_tokens)), Some((120, 40, 100)));
        assert_eq!(t.finish(), "");
    }

    #[test]
    fn openai_stream_without_usage_closes_on_done() {
        let stream = concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        );
        let mut t = OpenAiToAnthropicStream::new("msg_1", "m");
        let mut parser = SseParser::new();
        let mut text = String::new();
        for ev in parser.push(stream.as_bytes()) {
            let r = t.push(&ev);
            assert!(r.is_ok());
            text.push_str(&r.unwrap_or_default());
        }
        // Finish seen but neither usage nor [DONE]: the message stays open.
        assert!(!text.contains("message_delta"));
        let tail = t.push(&SseEvent::new(None, "[DONE]")).unwrap_or_default();
        assert!(tail.contains("\"stop_reason\":\"max_tokens\""));
        assert!(tail.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
        assert_eq!(t.output_chars(), 2);
        assert_eq!(t.usage(), None);
    }

    #[test]
    fn openai_stream_cut_short_is_closed_by_finish() {
        let mut t = OpenAiToAnthropicStream::new("msg_1", "m");
        let chunk = "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"partial\"},\"finish_reason\":null}]}";
        assert!(t.push(&SseEvent::new(None, chunk)).is_ok());
        let tail = t.finish();
        let names: Vec<Option<String>> = SseParser::new().push(tail.as_bytes()).into_iter().map(|e| e.event).collect();
        assert_eq!(names, [Some("content_block_stop".into()), Some("message_delta".into()), Some("message_stop".into())]);
        assert_eq!(t.finish(), "");
    }

    #[test]
    fn openai_stream_error_chunk_becomes_error_event() {
        let mut t = OpenAiToAnthropicStream::new("msg_1", "m");
        let out = t.push(&SseEvent::new(None, "{\"error\":{\"code\":502,\"message\":\"Provider returned error\"}}")).unwrap_or_default();
        let evs = SseParser::new().push(out.as_bytes());
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event.as_deref(), Some("error"));
        let body: Value = serde_json::from_str(&evs[0].data).unwrap_or(Value::Null);
        assert_eq!(body, json!({"type": "error", "error": {"type": "api_error", "message": "Provider returned error"}}));
        assert_eq!(t.finish(), "");
        assert!(t.push(&SseEvent::new(None, "not json")).is_ok(), "ignored once finished");
        let mut t = OpenAiToAnthropicStream::new("msg_1", "m");
        assert!(t.push(&SseEvent::new(None, "not json")).is_err());
    }
}
