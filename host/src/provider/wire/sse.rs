//! Server-sent events: an incremental parser for upstream response bodies
//! and encoders for the two APIs' framings.
//!
//! The parser follows the WHATWG event-stream rules (any of `\r\n`, `\n`,
//! `\r` ends a line; a blank line dispatches; `data:` lines join with `\n`;
//! one leading space after the colon is dropped; `:` lines are comments;
//! a leading BOM is skipped; events without `data` are not dispatched).
//! It decodes only complete lines, so a multi-byte UTF-8 character split
//! across network chunks is never mangled.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use super::anthropic::StreamEvent;
use super::openai::ChatCompletionChunk;

/// The `data` payload that ends an OpenAI stream.
pub const OPENAI_DONE: &str = "[DONE]";

/// Default cap on one event's size (pending line plus accumulated data).
/// Generous enough for a large tool-call delta, small enough that a broken
/// upstream that never sends a newline cannot exhaust memory.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

const BOM: &[u8] = "\u{feff}".as_bytes();

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `None` when absent or empty (SSE's default
    /// `message` type).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// Whether this is OpenAI's end-of-stream marker `data: [DONE]`.
    pub fn is_openai_done(&self) -> bool {
        self.data.trim() == OPENAI_DONE
    }
}

/// Adds `"name": value` (value already JSON) to the JSON object `data`.
/// Spliced into the text: a round trip through `Value` cost more than the
/// rest of the stream's tail.
pub fn add_field(data: &mut String, name: &str, value: &str) {
    if data.ends_with('}') {
        data.pop();
        if !data.ends_with('{') {
            data.push(',');
        }
        data.push('"');
        data.push_str(name);
        data.push_str("\":");
        data.push_str(value);
        data.push('}');
    }
}

/// Failure of [`SseParser::feed`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event grew past the parser's size cap.
    #[error("server-sent event exceeds {limit} bytes without ending")]
    EventTooLarge {
        /// The cap that was exceeded.
        limit: usize,
    },
}

/// Incremental event-stream parser; feed it body chunks as they arrive.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line.
    pending: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` opening the next chunk
    /// belongs to the same line ending.
    skip_lf: bool,
    /// The stream start has been checked for a BOM.
    bom_checked: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    max_event_bytes: usize,
    /// An oversized event is being skipped up to the next blank line.
    discarding: bool,
    /// The line being skipped already had bytes, so its end is no blank line.
    discarded_line_started: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the [`DEFAULT_MAX_EVENT_BYTES`] cap.
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that fails once one event exceeds `limit` bytes.
    pub fn with_max_event_bytes(limit: usize) -> Self {
        Self {
            pending: Vec::new(),
            skip_lf: false,
            bom_checked: false,
            event: None,
            data: String::new(),
            has_data: false,
            max_event_bytes: limit,
            discarding: false,
            discarded_line_started: false,
        }
    }

    /// Consumes a chunk of the body and returns the events it completed.
    ///
    /// After an [`SseError`] the rest of that chunk is dropped and the parser
    /// skips input up to the next blank line, so a caller that chooses to go
    /// on resumes at the next whole event.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        if self.bom_checked {
            self.scan(chunk, &mut events)?;
            return Ok(events);
        }
        // The BOM may arrive split across chunks: until three bytes have been
        // seen, `pending` holds only a possible BOM prefix.
        let mut head = std::mem::take(&mut self.pending);
        head.extend_from_slice(chunk);
        if head.len() < BOM.len() && BOM.starts_with(&head) {
            self.pending = head;
            return Ok(events);
        }
        self.bom_checked = true;
        self.scan(head.strip_prefix(BOM).unwrap_or(&head), &mut events)?;
        Ok(events)
    }

    /// Ends the stream: a final line or event the upstream did not terminate
    /// with a blank line is dispatched rather than dropped (the standard
    /// drops it, but a gateway should not lose a sloppy server's last event).
    pub fn finish(&mut self) -> Option<SseEvent> {
        self.skip_lf = false;
        if self.discarding {
            self.discarding = false;
            self.pending.clear();
            self.reset_event();
            return None;
        }
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            if let Some(event) = self.process_line(&line) {
                return Some(event);
            }
        }
        self.dispatch()
    }

    fn scan(&mut self, mut bytes: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.skip_lf && !bytes.is_empty() {
            self.skip_lf = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            if self.discarding {
                // Only a truly empty line ends the discarded event.
                if end == 0 && !self.discarded_line_started {
                    self.discarding = false;
                }
                self.discarded_line_started = false;
            } else if self.pending.is_empty() {
                events.extend(self.process_line(&bytes[..end]));
            } else {
                self.pending.extend_from_slice(&bytes[..end]);
                let line = std::mem::take(&mut self.pending);
                events.extend(self.process_line(&line));
            }
            let line_end = bytes[end];
            bytes = &bytes[end + 1..];
            if line_end == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            self.check_size(0)?;
        }
        if self.discarding {
            self.discarded_line_started |= !bytes.is_empty();
            return Ok(());
        }
        self.check_size(bytes.len())?;
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// Fails, and starts discarding the event, once the pending line plus
    /// `incoming` bytes plus the event's data exceed the cap.
    fn check_size(&mut self, incoming: usize) -> Result<(), SseError> {
        if self.pending.len() + incoming + self.data.len() <= self.max_event_bytes {
            return Ok(());
        }
        self.discarding = true;
        self.discarded_line_started = incoming > 0 || !self.pending.is_empty();
        self.pending.clear();
        self.reset_event();
        Err(SseError::EventTooLarge {
            limit: self.max_event_bytes,
        })
    }

    fn process_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = (!value.is_empty()).then(|| value.to_owned()),
            // `id`, `retry` and unknown fields carry nothing a gateway uses.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if !self.has_data {
            self.reset_event();
            return None;
        }
        let event = SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
        };
        self.has_data = false;
        Some(event)
    }

    fn reset_event(&mut self) {
        self.event = None;
        self.data.clear();
        self.has_data = false;
    }
}

/// Frames one event: an optional `event:` line, one `data:` line per line
/// of `data` (any line ending splits), and the blank line. Line breaks in
/// the event name are dropped: the name may come from an upstream's JSON
/// `type`, and must not be able to inject lines into the client's stream.
pub fn encode_event(event: Option<&str>, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + event.map_or(0, str::len) + 16);
    if let Some(name) = event {
        out.put_slice(b"event: ");
        for part in name.split(['\r', '\n']) {
            out.put_slice(part.as_bytes());
        }
        out.put_u8(b'\n');
    }
    let normalized;
    let data = if data.contains('\r') {
        normalized = data.replace("\r\n", "\n").replace('\r', "\n");
        normalized.as_str()
    } else {
        data
    };
    for line in data.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// Frames `value` as compact JSON (which never contains a raw newline, so
/// it always fits one `data:` line).
pub fn encode_json<T: Serialize>(
    event: Option<&str>,
    value: &T,
) -> Result<Bytes, serde_json::Error> {
    let json = serde_json::to_string(value)?;
    Ok(encode_event(event, &json))
}

/// Frames an OpenAI chunk: `data: {json}\n\n`.
pub fn encode_openai_chunk(chunk: &ChatCompletionChunk) -> Result<Bytes, serde_json::Error> {
    encode_json(None, chunk)
}

/// OpenAI's end-of-stream frame: `data: [DONE]\n\n`.
pub fn openai_done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// Frames an Anthropic event: `event: <type>\ndata: {json}\n\n`.
pub fn encode_anthropic_event(event: &StreamEvent) -> Result<Bytes, serde_json::Error> {
    encode_json(Some(event.event_type()), event)
}

#[cfg(test)]
mod tests {
    use super::super::anthropic::{ErrorDetail, ErrorType};
    use super::*;

    fn event(name: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: name.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(parser.feed(chunk).expect("feed"));
        }
        events.extend(parser.finish());
        events
    }

    /// A stream exercising every rule, with the events it must yield.
    fn sample() -> (Vec<u8>, Vec<SseEvent>) {
        let mut body = Vec::new();
        body.extend_from_slice(BOM);
        body.extend_from_slice(
            concat!(
                ": keep-alive comment\n",
                "event: message_start\r\n",
                "data: {\"a\":1}\r\n",
                "\r\n",
                "data: line one\n",
                "data:line two\n",
                "data:  two spaces\n",
                "id: 7\n",
                "retry: 1000\n",
                "\n",
                "event: only-a-name\n",
                "\n",
                "data\r",
                "\r",
                "event: ping\rdata: {}\r\r",
                "data: héllo ✓ 🦀\n\n",
                "data: [DONE]\n\n",
            )
            .as_bytes(),
        );
        let expected = vec![
            event(Some("message_start"), "{\"a\":1}"),
            event(None, "line one\nline two\n two spaces"),
            event(None, ""),
            event(Some("ping"), "{}"),
            event(None, "héllo ✓ 🦀"),
            event(None, "[DONE]"),
        ];
        (body, expected)
    }

    #[test]
    fn parses_whole_body() {
        let (body, expected) = sample();
        assert_eq!(parse_all(&[&body]), expected);
    }

    #[test]
    fn parses_identically_when_split_at_every_byte_boundary() {
        let (body, expected) = sample();
        for split in 0..=body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(parse_all(&[a, b]), expected, "split at {split}");
        }
        for split in 0..body.len() {
            for second in split..=body.len() {
                let parts = [&body[..split], &body[split..second], &body[second..]];
                assert_eq!(parse_all(&parts), expected, "split at {split} and {second}");
            }
        }
    }

    #[test]
    fn parses_one_byte_at_a_time() {
        let (body, expected) = sample();
        let chunks: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(parse_all(&chunks), expected);
    }

    #[test]
    fn finish_flushes_an_unterminated_last_event() {
        assert_eq!(parse_all(&[b"data: [DONE]"]), vec![event(None, "[DONE]")]);
        assert_eq!(
            parse_all(&[b"event: e\ndata: x\n"]),
            vec![event(Some("e"), "x")]
        );
        assert_eq!(parse_all(&[b"data: x\r"]), vec![event(None, "x")]);
        assert_eq!(parse_all(&[b": only a comment"]), vec![]);
        assert_eq!(parse_all(&[b"\xef\xbb"]), vec![]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(
            parse_all(&[b"data: a\xffb\n\n"]),
            vec![event(None, "a\u{fffd}b")]
        );
    }

    #[test]
    fn oversized_event_is_rejected_then_parser_recovers() {
        let mut parser = SseParser::with_max_event_bytes(16);
        assert_eq!(parser.feed(b"data: 0123456789"), Ok(vec![]));
        assert_eq!(
            parser.feed(b"abcdefghij"),
            Err(SseError::EventTooLarge { limit: 16 })
        );
        // The rest of the oversized event, second data line included, is
        // skipped up to the blank line; parsing resumes after it.
        let events = parser
            .feed(b"klmno\ndata: tail\n\ndata: ok\n\n")
            .expect("recovers");
        assert_eq!(events, vec![event(None, "ok")]);

        let mut parser = SseParser::with_max_event_bytes(16);
        let err = parser
            .feed(b"data: 0123456789\ndata: 0123456789\n")
            .expect_err("accumulated data counts too");
        assert_eq!(err, SseError::EventTooLarge { limit: 16 });
        assert_eq!(parser.feed(b"\ndata: ok\n\n"), Ok(vec![event(None, "ok")]));
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn done_marker_is_recognised() {
        assert!(event(None, "[DONE]").is_openai_done());
        assert!(!event(None, "{}").is_openai_done());
    }

    #[test]
    fn encoders_frame_each_format() {
        assert_eq!(openai_done(), Bytes::from_static(b"data: [DONE]\n\n"));
        assert_eq!(
            encode_event(Some("e"), "a\nb\r\nc"),
            Bytes::from_static(b"event: e\ndata: a\ndata: b\ndata: c\n\n")
        );
        assert_eq!(
            encode_event(Some("x\r\ndata: injected"), "{}"),
            Bytes::from_static(b"event: xdata: injected\ndata: {}\n\n")
        );
        let chunk: ChatCompletionChunk = serde_json::from_str(
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}"#,
        )
        .expect("chunk");
        assert_eq!(
            encode_openai_chunk(&chunk).expect("encode"),
            Bytes::from_static(
                b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[]}\n\n"
            )
        );
        let error = StreamEvent::Error {
            error: ErrorDetail {
                kind: ErrorType::OverloadedError,
                message: "Overloaded".into(),
                extra: Default::default(),
            },
        };
        assert_eq!(
            encode_anthropic_event(&error).expect("encode"),
            Bytes::from_static(
                b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
            )
        );
        assert_eq!(
            encode_anthropic_event(&StreamEvent::MessageStop).expect("encode"),
            Bytes::from_static(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
        );
    }

    #[test]
    fn encoded_events_parse_back() {
        let mut body = Vec::new();
        body.extend_from_slice(&encode_event(Some("x"), "multi\nline"));
        body.extend_from_slice(&encode_anthropic_event(&StreamEvent::Ping).expect("encode"));
        body.extend_from_slice(&openai_done());
        assert_eq!(
            parse_all(&[&body]),
            vec![
                event(Some("x"), "multi\nline"),
                event(Some("ping"), "{\"type\":\"ping\"}"),
                event(None, "[DONE]"),
            ]
        );
    }
}
