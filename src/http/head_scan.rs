//! Raw HTTP/1 head inspection for request-smuggling shapes that hyper's parser resolves silently.
//!
//! hyper accepts `Content-Length` + `Transfer-Encoding` (it drops the length and closes after the
//! response) and merges identical duplicate `Content-Length`s, so neither shape is visible in the
//! parsed request. RFC 9112 §6.3 lets a server reject both, and a gateway should: an upstream or a
//! second proxy may frame the message differently. [`ScanIo`] watches the bytes hyper reads,
//! follows HTTP/1 framing just far enough to find each request head (skipping `Content-Length`
//! and chunked bodies), and records the index of the first request whose head had a smuggling
//! shape; the service marks that request so `sanitize::check` answers 400 and closes.
//!
//! Only header *names*, the `Content-Length` digits and the last `Transfer-Encoding` token are
//! looked at; nothing is copied beyond a bounded line prefix.
//!
//! The same follower is the connection's **slowloris guard** (`limits.header_read_timeout`):
//! once a request head has begun, the rest of it must arrive within the limit, or reads fail
//! with `TimedOut` and hyper closes the connection (as NGINX's `client_header_timeout` does).
//! The deadline is armed only when a read has to wait inside a head, so a head that arrives
//! whole, as nearly every head does, costs no clock read, no timer and no allocation. Once the
//! connection becomes a tunnel (a `101`), its bytes are not HTTP/1: nothing is scanned and no
//! deadline runs (a WebSocket may pause between frames as long as `idle_timeout` allows).
//! hyper's own header timer is not used on the main listener: it starts a boxed timer for every
//! request and registers it in the timer wheel while the connection waits for the next one
//! (BENCHMARKS.md, "Six cuts on h1").

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

use super::idle::Activity;
use super::io_delegate::forward_async_write;

/// Longest line prefix kept for inspection; longer lines are judged by their prefix.
const LINE_PREFIX: usize = 128;

/// No request has been flagged.
const NONE: u64 = u64::MAX;

/// The verdict shared between the IO wrapper and the service.
#[derive(Debug)]
pub(crate) struct ScanVerdict {
    /// Index (0-based, in arrival order) of the first request with a smuggling shape.
    flagged: AtomicU64,
    /// Which shape it was: 1 = CL+TE, 2 = duplicate CL.
    shape: AtomicU64,
}

impl ScanVerdict {
    fn new() -> Self {
        Self {
            flagged: AtomicU64::new(NONE),
            shape: AtomicU64::new(0),
        }
    }

    /// The reason if request number `index` on this connection had a smuggling shape.
    pub(crate) fn shape_of(&self, index: u64) -> Option<&'static str> {
        if self.flagged.load(Ordering::Acquire) != index {
            return None;
        }
        match self.shape.load(Ordering::Relaxed) {
            1 => Some("both Content-Length and Transfer-Encoding"),
            _ => Some("duplicate Content-Length"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request line or header line.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// Skipping to the end of the CRLF after chunk data.
    ChunkEnd,
    /// Reading trailer lines after the last chunk.
    Trailers,
    /// Not HTTP/1 framing any more (a flagged request, HTTP/2, or broken framing): stop looking.
    Done,
}

/// Per-head facts.
#[derive(Debug, Default)]
struct HeadFacts {
    lines: u32,
    content_lengths: u32,
    length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
}

/// The framing follower.
#[derive(Debug)]
struct Scanner {
    state: State,
    line: Vec<u8>,
    head: HeadFacts,
    requests: u64,
    verdict: Arc<ScanVerdict>,
}

impl Scanner {
    fn new(verdict: Arc<ScanVerdict>) -> Self {
        Self {
            state: State::Head,
            line: Vec::with_capacity(LINE_PREFIX),
            head: HeadFacts::default(),
            requests: 0,
            verdict,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Done => return,
                State::Body(remaining) | State::ChunkData(remaining) => {
                    let take = remaining.min(bytes.len() as u64);
                    bytes = &bytes[usize::try_from(take).unwrap_or(bytes.len())..];
                    let left = remaining - take;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), n) => State::Body(n),
                        (_, 0) => State::ChunkEnd,
                        (_, n) => State::ChunkData(n),
                    };
                }
                State::Head | State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    let Some(newline) = memchr::memchr(b'\n', bytes) else {
                        self.keep(bytes);
                        return;
                    };
                    let line = &bytes[..newline];
                    bytes = &bytes[newline + 1..];
                    if self.line.is_empty() {
                        // The whole line is in this read: judge it where it lies.
                        self.line_ended(&line[..line.len().min(LINE_PREFIX)]);
                    } else {
                        self.keep(line);
                        self.end_of_line();
                    }
                }
            }
        }
    }

    /// True when the bytes so far end inside a request head: its request line or a header line
    /// has begun and its blank line has not come.
    fn inside_head(&self) -> bool {
        self.state == State::Head && (self.head.lines > 0 || !self.line.is_empty())
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = LINE_PREFIX.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    /// A line that began in an earlier read ended: judge its kept prefix.
    fn end_of_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.line_ended(&line);
        self.line = line;
        self.line.clear();
    }

    /// Judges a line's first [`LINE_PREFIX`] bytes (without its `\n`).
    fn line_ended(&mut self, line: &[u8]) {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        self.state = match self.state {
            State::Head => self.head_line(text),
            State::ChunkSize => self.chunk_size_line(text),
            State::ChunkEnd => State::ChunkSize,
            State::Trailers if text.is_empty() => State::Head,
            other => other,
        };
    }

    fn head_line(&mut self, text: &[u8]) -> State {
        if self.head.lines == 0 {
            if text.is_empty() {
                return State::Head; // tolerated CRLF between requests
            }
            if text.starts_with(b"PRI * HTTP/2.0") {
                return State::Done;
            }
            self.head.lines = 1;
            return State::Head;
        }
        if !text.is_empty() {
            self.header_line(text);
            return State::Head;
        }
        let head = std::mem::take(&mut self.head);
        let index = self.requests;
        self.requests += 1;
        let shape = match (head.transfer_encoding, head.content_lengths) {
            (true, n) if n > 0 => 1,
            (false, n) if n > 1 => 2,
            _ => 0,
        };
        if shape != 0 {
            self.verdict.shape.store(shape, Ordering::Relaxed);
            self.verdict.flagged.store(index, Ordering::Release);
            return State::Done;
        }
        match (head.transfer_encoding, head.length) {
            (true, _) if head.chunked_last => State::ChunkSize,
            (true, _) => State::Done,
            (false, Some(0) | None) => State::Head,
            (false, Some(length)) => State::Body(length),
        }
    }

    fn header_line(&mut self, text: &[u8]) {
        self.head.lines += 1;
        let Some(colon) = memchr::memchr(b':', text) else {
            return;
        };
        let name = &text[..colon];
        let value = trim(&text[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            self.head.content_lengths += 1;
            self.head.length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.head.transfer_encoding = true;
            let last = value
                .rsplit(|b| *b == b',')
                .next()
                .map(trim)
                .unwrap_or_default();
            self.head.chunked_last = last.eq_ignore_ascii_case(b"chunked");
        }
    }

    fn chunk_size_line(&self, text: &[u8]) -> State {
        let digits = text
            .split(|b| *b == b';')
            .next()
            .map(trim)
            .unwrap_or_default();
        let size = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u64::from_str_radix(d, 16).ok());
        match size {
            None => State::Done,
            Some(0) => State::Trailers,
            Some(size) => State::ChunkData(size),
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

pin_project_lite::pin_project! {
    /// Passes IO through while following HTTP/1 request framing and bounding how long a request
    /// head may take (see the module doc).
    pub(crate) struct ScanIo<T> {
        #[pin]
        inner: T,
        scanner: Scanner,
        deadline: HeadDeadline,
        // Says when the connection became a tunnel (a `101`): from then on its bytes are not
        // HTTP/1, so nothing is scanned and no head deadline runs.
        activity: Arc<Activity>,
    }
}

impl<T> ScanIo<T> {
    /// Wraps the plaintext side of an HTTP/1 connection; the verdict is shared with the service.
    /// `header_read_timeout`: how long a request head may be waited for. `activity`: the
    /// connection's, which says when it became a tunnel.
    pub(crate) fn new(
        inner: T,
        header_read_timeout: Duration,
        activity: Arc<Activity>,
    ) -> (Self, Arc<ScanVerdict>) {
        let verdict = Arc::new(ScanVerdict::new());
        (
            Self {
                inner,
                scanner: Scanner::new(verdict.clone()),
                deadline: HeadDeadline::new(header_read_timeout),
                activity,
            },
            verdict,
        )
    }
}

impl<T: AsyncRead> AsyncRead for ScanIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.deadline.expired {
            return Poll::Ready(Err(head_timed_out()));
        }
        if this.scanner.state != State::Done && this.activity.is_tunnel() {
            this.scanner.state = State::Done;
            this.deadline.disarm();
        }
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        match result {
            Poll::Ready(Ok(())) if this.scanner.state != State::Done => {
                this.scanner.feed(&buf.filled()[before..]);
                if !this.scanner.inside_head() {
                    this.deadline.disarm();
                }
            }
            Poll::Pending if this.deadline.poll_expired(this.scanner.inside_head(), cx) => {
                return Poll::Ready(Err(head_timed_out()));
            }
            _ => {}
        }
        result
    }
}

/// The error a read gives once a request head took longer than `header_read_timeout`.
fn head_timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, HeadTimedOut)
}

/// The error inside the `TimedOut` read error that ends a connection whose request head did not
/// arrive within `header_read_timeout`, so the connection's driver can tell it from others.
#[derive(Debug)]
pub(crate) struct HeadTimedOut;

impl std::fmt::Display for HeadTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request head not complete within header_read_timeout")
    }
}

impl std::error::Error for HeadTimedOut {}

impl HeadTimedOut {
    /// True if `error` is (or wraps, as hyper's IO error does) a head timeout.
    pub(crate) fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if error.is::<Self>() {
                return true;
            }
            if let Some(io) = error.downcast_ref::<io::Error>()
                && io.get_ref().is_some_and(|inner| inner.is::<Self>())
            {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// The deadline of the request head being received. Armed the first time a read waits inside a
/// head, that is, when the reader (hyper) waits for the rest of a head the client has not sent:
/// a head that came whole, or whose rest is already in the socket when it is read, never arms
/// it, and a pipelined head that came in part while the request before it was served starts its
/// clock only once it is read for, as hyper's own timer did.
#[derive(Debug)]
struct HeadDeadline {
    limit: Duration,
    /// Set while a head is being waited for; `None` between heads.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The deadline passed: every later read fails.
    expired: bool,
}

impl HeadDeadline {
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            sleep: None,
            expired: false,
        }
    }

    /// The head is complete (or none has begun): no deadline.
    fn disarm(&mut self) {
        self.sleep = None;
    }

    /// While a read waits: arms the deadline if the bytes so far end `inside_head` and it is not
    /// armed yet; true once it has passed (and from then on). Registers `cx` to be woken then.
    fn poll_expired(&mut self, inside_head: bool, cx: &mut Context<'_>) -> bool {
        if self.expired {
            return true;
        }
        if !inside_head {
            return false;
        }
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(self.limit)));
        if sleep.as_mut().poll(cx).is_ready() {
            self.sleep = None;
            self.expired = true;
        }
        self.expired
    }
}

// Writes pass straight through: only the read side is scanned.
forward_async_write!(ScanIo, inner);

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Arc<ScanVerdict> {
        let verdict = Arc::new(ScanVerdict::new());
        let mut scanner = Scanner::new(verdict.clone());
        for chunk in chunks {
            scanner.feed(chunk);
        }
        verdict
    }

    #[test]
    fn clean_keep_alive_requests_are_not_flagged() {
        let verdict = scan(&[
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"lo\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n",
        ]);
        for index in 0..4 {
            assert_eq!(verdict.shape_of(index), None);
        }
    }

    #[test]
    fn cl_and_te_flag_the_right_request() {
        let verdict = scan(&[
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        ]);
        assert_eq!(verdict.shape_of(0), None);
        assert_eq!(
            verdict.shape_of(1),
            Some("both Content-Length and Transfer-Encoding")
        );
    }

    /// Which of the first four requests was flagged, and how, for these reads.
    fn verdict_of(chunks: &[&[u8]]) -> Vec<Option<&'static str>> {
        let verdict = scan(chunks);
        (0..4).map(|i| verdict.shape_of(i)).collect()
    }

    #[test]
    fn every_split_of_a_stream_gives_the_verdict_of_the_whole() {
        let long = format!("X-Long: {}\r\n", "v".repeat(300));
        let streams = [
            format!(
                "GET / HTTP/1.1\r\n{long}Host: h\r\n\r\n\
                 POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                 POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                 POST / HTTP/1.1\r\nContent-Length: 1\r\n{long}Transfer-Encoding: chunked\r\n\r\n"
            ),
            format!("GET / HTTP/1.1\r\nContent-Length: 0\r\n{long}content-length: 0\r\n\r\n"),
            // A length past the kept prefix is not read, whichever read the line came in.
            format!(
                "POST / HTTP/1.1\r\nContent-Length:{}5\r\n\r\nx\r\n\r\n\
                 GET / HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n",
                " ".repeat(LINE_PREFIX)
            ),
        ];
        for stream in &streams {
            let bytes = stream.as_bytes();
            let whole = verdict_of(&[bytes]);
            assert!(
                whole.iter().any(Option::is_some),
                "the stream has a shape to find"
            );
            for at in 1..bytes.len() {
                let (first, second) = bytes.split_at(at);
                assert_eq!(verdict_of(&[first, second]), whole, "split at {at}");
            }
        }
    }

    #[test]
    fn a_read_ends_inside_a_head_exactly_between_its_first_and_last_byte() {
        let first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
        let second = "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
        let stream = format!("{first}{second}abc\r\n{first}");
        // The heads' byte ranges, and the empty line tolerated before a request (a read that
        // ends inside it has begun a line); the body is neither.
        let body_end = first.len() + second.len() + 3;
        let after_body = body_end + 2;
        let heads = [
            0..first.len(),
            first.len()..first.len() + second.len(),
            body_end..after_body,
            after_body..after_body + first.len(),
        ];
        for fed in 1..=stream.len() {
            let mut scanner = Scanner::new(Arc::new(ScanVerdict::new()));
            scanner.feed(&stream.as_bytes()[..fed]);
            let inside = heads.iter().any(|head| head.start < fed && fed < head.end);
            assert_eq!(scanner.inside_head(), inside, "after {fed} bytes");
        }
    }

    #[test]
    fn duplicate_content_length_is_flagged_even_split_across_reads() {
        let verdict = scan(&[
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Le",
            b"ngth: 3\r\ncontent-length: 3\r\n\r\nabc",
        ]);
        assert_eq!(verdict.shape_of(0), Some("duplicate Content-Length"));
    }

    #[test]
    fn smuggling_text_inside_a_body_is_not_a_head() {
        let body = b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        let head = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let verdict = scan(&[head.as_bytes(), body]);
        assert_eq!(verdict.shape_of(0), None);
        assert_eq!(verdict.shape_of(1), None);
    }
}
