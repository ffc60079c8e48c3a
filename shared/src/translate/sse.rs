//! Incremental Server-Sent Events parsing and encoding.
//!
//! [`SseParser`] follows the WHATWG event-stream rules that matter for LLM
//! upstreams: lines end in `\n`, `\r\n` or `\r`; `event:` names the event;
//! `data:` lines are joined with `\n`; one leading space after the colon is
//! stripped; lines starting with `:` are comments (OpenRouter sends
//! `: OPENROUTER PROCESSING` keep-alives) and are only counted; an empty line
//! dispatches the event. Bytes may be pushed split at any boundary, including
//! inside a UTF-8 character: lines are decoded only once complete.

/// One dispatched event. `event` is `None` when the stream sent no `event:`
/// line (OpenAI never does; Anthropic always does).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn new(event: Option<&str>, data: impl Into<String>) -> Self {
        Self { event: event.map(str::to_owned), data: data.into() }
    }

    /// OpenAI's end-of-stream sentinel, `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }
}

#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous byte was `\r`: a following `\n` belongs to the same break.
    after_cr: bool,
    /// Still at the very start of the stream (a UTF-8 BOM is skipped there).
    at_start: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    comments_seen: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self { line: Vec::new(), after_cr: false, at_start: true, event: None, data: String::new(), has_data: false, comments_seen: 0 }
    }
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the events completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    /// End of stream: dispatches an event whose final blank line never came.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.line.is_empty() {
            // A non-empty line never dispatches by itself.
            self.end_line(&mut Vec::new());
        }
        self.after_cr = false;
        self.dispatch()
    }

    /// How many `:` comment lines (keep-alives) were seen.
    pub fn comments_seen(&self) -> u64 {
        self.comments_seen
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let mut raw = std::mem::take(&mut self.line);
        if self.at_start {
            self.at_start = false;
            if raw.starts_with(&[0xEF, 0xBB, 0xBF]) {
                raw.drain(..3);
            }
        }
        if raw.is_empty() {
            if let Some(ev) = self.dispatch() {
                out.push(ev);
            }
            return;
        }
        let line = String::from_utf8_lossy(&raw);
        if line.starts_with(':') {
            self.comments_seen += 1;
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id`, `retry` and unknown fields carry nothing we use.
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent { event: event.filter(|e| !e.is_empty()), data: std::mem::take(&mut self.data) })
    }
}

/// OpenAI's stream terminator.
pub const DONE: &str = "data: [DONE]\n\n";

/// `data: <payload>\n\n`; a payload containing newlines becomes several
/// `data:` lines, which a parser joins back.
pub fn encode_data(json: &str) -> String {
    let mut s = String::with_capacity(json.len() + 8);
    push_data_lines(&mut s, json);
    s.push('\n');
    s
}

/// `event: <name>\ndata: <payload>\n\n` (Anthropic's framing).
pub fn encode_event(name: &str, json: &str) -> String {
    let mut s = String::with_capacity(name.len() + json.len() + 16);
    s.push_str("event: ");
    s.push_str(name);
    s.push('\n');
    push_data_lines(&mut s, json);
    s.push('\n');
    s
}

/// `: <text>\n\n`, a comment clients ignore (useful as a keep-alive).
pub fn encode_comment(text: &str) -> String {
    format!(": {}\n\n", text.replace(['\r', '\n'], " "))
}

fn push_data_lines(s: &mut String, payload: &str) {
    for line in payload.split('\n') {
        s.push_str("data: ");
        s.push_str(line.strip_suffix('\r').unwrap_or(line));
        s.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "event: message_start\r\ndata: {\"type\":\"message_start\",\"text\":\"héllo → 世界 🎉\"}\r\n\r\n: OPENROUTER PROCESSING\n\n\
event: ping\ndata: {\"type\":\"ping\"}\n\n\
data: line one\ndata: line two\n\n\
data:no-space\r\rdata: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent::new(Some("message_start"), "{\"type\":\"message_start\",\"text\":\"héllo → 世界 🎉\"}"),
            SseEvent::new(Some("ping"), "{\"type\":\"ping\"}"),
            SseEvent::new(None, "line one\nline two"),
            SseEvent::new(None, "no-space"),
            SseEvent::new(None, "[DONE]"),
        ]
    }

    #[test]
    fn parses_whole_stream() {
        let mut p = SseParser::new();
        let evs = p.push(SAMPLE.as_bytes());
        assert_eq!(evs, expected());
        assert_eq!(p.comments_seen(), 1);
        assert_eq!(p.finish(), None);
        assert!(evs[4].is_done());
    }

    #[test]
    fn every_split_point_yields_identical_events() {
        let bytes = SAMPLE.as_bytes();
        for cut in 0..=bytes.len() {
            let mut p = SseParser::new();
            let mut evs = p.push(&bytes[..cut]);
            evs.extend(p.push(&bytes[cut..]));
            assert_eq!(evs, expected(), "split at byte {cut}");
            assert_eq!(p.comments_seen(), 1);
        }
    }

    #[test]
    fn byte_by_byte_yields_identical_events() {
        let mut p = SseParser::new();
        let mut evs = Vec::new();
        for b in SAMPLE.as_bytes() {
            evs.extend(p.push(std::slice::from_ref(b)));
        }
        assert_eq!(evs, expected());
    }

    #[test]
    fn keep_alive_comments_are_ignored_but_counted() {
        let mut p = SseParser::new();
        let evs = p.push(b": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\ndata: {\"a\":1}\n\n");
        assert_eq!(evs, vec![SseEvent::new(None, "{\"a\":1}")]);
        assert_eq!(p.comments_seen(), 2);
    }

    #[test]
    fn finish_flushes_unterminated_event() {
        let mut p = SseParser::new();
        assert!(p.push(b"event: message_stop\ndata: {\"type\":\"message_stop\"}").is_empty());
        assert_eq!(p.finish(), Some(SseEvent::new(Some("message_stop"), "{\"type\":\"message_stop\"}")));
        assert_eq!(p.finish(), None);

        let mut p = SseParser::new();
        assert!(p.push(b"data: x\n").is_empty());
        assert_eq!(p.finish(), Some(SseEvent::new(None, "x")));
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_does_not_leak_its_name() {
        let mut p = SseParser::new();
        let evs = p.push(b"event: orphan\n\ndata: d\n\n");
        assert_eq!(evs, vec![SseEvent::new(None, "d")]);
    }

    #[test]
    fn bom_and_empty_data_and_fields() {
        let mut p = SseParser::new();
        let evs = p.push(b"\xEF\xBB\xBFdata\nid: 7\nretry: 10\n\ndata:  two spaces\n\n");
        assert_eq!(evs, vec![SseEvent::new(None, ""), SseEvent::new(None, " two spaces")]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_panicking() {
        let mut p = SseParser::new();
        let evs = p.push(b"data: \xFF\xFE ok\n\n");
        assert_eq!(evs.len(), 1);
        assert!(evs[0].data.ends_with(" ok"));
    }

    #[test]
    fn encoders() {
        assert_eq!(encode_data("{\"a\":1}"), "data: {\"a\":1}\n\n");
        assert_eq!(encode_event("ping", "{\"type\":\"ping\"}"), "event: ping\ndata: {\"type\":\"ping\"}\n\n");
        assert_eq!(DONE, "data: [DONE]\n\n");
        assert_eq!(encode_comment("keep\nalive"), ": keep alive\n\n");
        // A multi-line payload survives a round trip through the parser.
        let mut p = SseParser::new();
        assert_eq!(p.push(encode_event("x", "a\nb").as_bytes()), vec![SseEvent::new(Some("x"), "a\nb")]);
    }
}
