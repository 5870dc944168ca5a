//! HTTP/1.1 on the upstream wire, for requests that carry no body: the request head as bytes,
//! the response head parsed into an `http::Response`, and how the response body is delimited
//! (RFC 9112 §6.3), with a strict decoder for chunked bodies.
//!
//! Pure functions over buffers; the connection that feeds them is `proxy::exchange`.

use std::mem::MaybeUninit;

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};

/// Most headers a response head may carry (hyper's client default).
pub const MAX_HEADERS: usize = 100;

/// Largest response head accepted, in bytes (hyper's client default read buffer).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// Largest chunk-size line (size and extensions) or trailer section accepted, in bytes.
const MAX_CHUNK_META_BYTES: usize = 16 * 1024;

/// What is wrong with what an upstream sent. Messages name the fault, never header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The response head does not parse as HTTP/1.x.
    #[error("malformed response head")]
    MalformedHead,
    /// The response head is larger than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`].
    #[error("response head too large")]
    HeadTooLarge,
    /// `Content-Length` is not a number, or two of them disagree.
    #[error("invalid content-length")]
    InvalidContentLength,
    /// A chunk size line or trailer section is malformed or too long.
    #[error("malformed chunked body")]
    MalformedChunk,
}

/// Writes the request head: request line, `host` when `headers` has no `Host`, `headers`, then
/// `added`, and the blank line. Values are `HeaderValue`s, which never hold CR or LF.
pub fn encode_request_head(
    buf: &mut Vec<u8>,
    method: &Method,
    target: &PathAndQuery,
    headers: &HeaderMap,
    added: &[(HeaderName, HeaderValue)],
    host: Option<&HeaderValue>,
) {
    buf.extend_from_slice(method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.as_str().as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = host.filter(|_| !headers.contains_key(header::HOST)) {
        push_header(buf, header::HOST.as_str(), host.as_bytes());
    }
    for (name, value) in headers.iter().chain(added.iter().map(|(n, v)| (n, v))) {
        push_header(buf, name.as_str(), value.as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
}

fn push_header(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// A complete response head taken off the front of the read buffer.
#[derive(Debug)]
pub struct Head {
    /// Status, version and headers; the body is decided by [`Head::framing`].
    pub response: Response<()>,
    /// How the body is delimited.
    pub framing: Framing,
    /// The connection may carry another request once this body is read.
    pub reusable: bool,
}

/// How a response body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD request, or 1xx, 204, 304.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// Parses the response head at the front of `buf`. `Ok(None)`: not complete yet. On success
/// the head's bytes are gone from `buf`, and the header values point into them (no copies).
///
/// # Errors
/// [`WireError`] for a head that is malformed, too large or frames its body ambiguously.
pub fn parse_response_head(
    buf: &mut BytesMut,
    request_method: &Method,
    names: &mut NameCache,
) -> Result<Option<Head>, WireError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Where each name and value lies in `buf`, so the parser's borrow of `buf` ends before the
    // head is split off it and the values become slices of the split-off bytes.
    let mut spans = [[0u32; 4]; MAX_HEADERS];
    let Some(parsed) = parse_spans(buf, &mut spans)? else {
        return Ok(None);
    };
    let head = buf.split_to(parsed.len).freeze();
    // Room for the headers the gateway adds to every response (request id, `RateLimit`,
    // `RateLimit-Policy`, HSTS), so adding them does not grow and rehash the map.
    let mut headers = HeaderMap::with_capacity(parsed.count + RESPONSE_HEADERS_ADDED);
    let mut delimiters = Delimiters::default();
    for (i, &[name_start, name_end, value_start, value_end]) in
        spans[..parsed.count].iter().enumerate()
    {
        let name = names.name(i, &head[name_start as usize..name_end as usize])?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value_start as usize..value_end as usize))
                .map_err(|_| WireError::MalformedHead)?;
        delimiters.note(&name, &value)?;
        if !always_dropped(&name, &value) {
            headers.append(name, value);
        }
    }
    let mut response = Response::new(());
    *response.status_mut() = parsed.status;
    *response.version_mut() = parsed.version;
    *response.headers_mut() = headers;
    let (framing, conflicting) = delimiters.framing(parsed.status, request_method);
    if conflicting {
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    let reusable = parsed.version == Version::HTTP_11
        && !conflicting
        && !delimiters.close
        && framing != Framing::UntilClose;
    Ok(Some(Head {
        response,
        framing,
        reusable,
    }))
}

/// The header names of a connection's last responses, by position: an upstream sends the same
/// names in the same order response after response, and comparing the bytes costs a fraction
/// of parsing them into a `HeaderName` again.
#[derive(Debug, Default)]
pub struct NameCache {
    entries: Vec<(Box<[u8]>, HeaderName)>,
}

/// Positions remembered; later headers are parsed every time.
const CACHED_NAMES: usize = 24;

impl NameCache {
    /// The name of header number `i`, spelled `raw`.
    fn name(&mut self, i: usize, raw: &[u8]) -> Result<HeaderName, WireError> {
        if let Some((spelled, name)) = self.entries.get(i)
            && **spelled == *raw
        {
            return Ok(name.clone());
        }
        let name = HeaderName::from_bytes(raw).map_err(|_| WireError::MalformedHead)?;
        if i < self.entries.len() {
            self.entries[i] = (raw.into(), name.clone());
        } else if i == self.entries.len() && i < CACHED_NAMES {
            self.entries.push((raw.into(), name.clone()));
        }
        Ok(name)
    }
}

/// Hop-by-hop headers the proxy removes whatever else the response says, left out of the map
/// instead of inserted and removed again: `Transfer-Encoding` and `Keep-Alive`, and a
/// `Connection` that lists nothing but `keep-alive` (one that names other headers stays, so
/// those are removed with it; so does `close`, which may name a header called `close`).
fn always_dropped(name: &HeaderName, value: &HeaderValue) -> bool {
    *name == header::TRANSFER_ENCODING
        || *name == "keep-alive"
        || (*name == header::CONNECTION && value.as_bytes().eq_ignore_ascii_case(b"keep-alive"))
}

/// How many headers the gateway adds to a proxied response at most, commonly.
const RESPONSE_HEADERS_ADDED: usize = 6;

/// What httparse found in a complete head.
struct Parsed {
    len: usize,
    count: usize,
    status: StatusCode,
    version: Version,
}

/// Runs httparse over `buf`, noting each header's name and value offsets in `spans`.
fn parse_spans(
    buf: &[u8],
    spans: &mut [[u32; 4]; MAX_HEADERS],
) -> Result<Option<Parsed>, WireError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(WireError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(WireError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(WireError::MalformedHead),
    };
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(WireError::MalformedHead),
    };
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(WireError::MalformedHead)?;
    // The head is at most MAX_HEAD_BYTES long, so every offset fits in a u32.
    let offset = |part: &[u8]| (part.as_ptr() as usize - buf.as_ptr() as usize) as u32;
    for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
        let name = offset(h.name.as_bytes());
        let value = offset(h.value);
        *span = [
            name,
            name + h.name.len() as u32,
            value,
            value + h.value.len() as u32,
        ];
    }
    Ok(Some(Parsed {
        len,
        count: parsed.headers.len(),
        status,
        version,
    }))
}

/// The headers that delimit a response body, noted while the head is read (one pass, no
/// lookups afterwards).
#[derive(Debug, Default)]
struct Delimiters {
    /// The length every `Content-Length` value agreed on.
    length: Option<u64>,
    /// `Transfer-Encoding` came; `chunked_last`: its last coding is `chunked`.
    transfer_encoding: bool,
    chunked_last: bool,
    /// `Connection` lists `close`.
    close: bool,
}

impl Delimiters {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), WireError> {
        if *name == header::CONTENT_LENGTH {
            self.note_length(value.as_bytes())
        } else {
            if *name == header::TRANSFER_ENCODING {
                self.transfer_encoding = true;
                self.chunked_last = value
                    .as_bytes()
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if *name == header::CONNECTION {
                self.close |= value
                    .as_bytes()
                    .split(|&b| b == b',')
                    .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
            }
            Ok(())
        }
    }

    /// Every comma-separated item must be digits and agree with the lengths seen before.
    fn note_length(&mut self, value: &[u8]) -> Result<(), WireError> {
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                return Err(WireError::InvalidContentLength);
            }
            let n = item
                .iter()
                .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
            if self.length.is_some_and(|seen| seen != n) {
                return Err(WireError::InvalidContentLength);
            }
            self.length = Some(n);
        }
        Ok(())
    }

    /// The body's framing (RFC 9112 §6.3), and whether `Transfer-Encoding` and
    /// `Content-Length` both came (the length is then ignored, and the connection is not
    /// trusted with another request).
    fn framing(&self, status: StatusCode, method: &Method) -> (Framing, bool) {
        if *method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return (Framing::Empty, false);
        }
        if self.transfer_encoding {
            let framing = if self.chunked_last {
                Framing::Chunked
            } else {
                Framing::UntilClose
            };
            return (framing, self.length.is_some());
        }
        match self.length {
            Some(length) => (Framing::Length(length), false),
            None => (Framing::UntilClose, false),
        }
    }
}

/// Decodes `Transfer-Encoding: chunked` from a buffer that fills as bytes arrive. Chunk
/// extensions and trailer fields are read and dropped.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: Chunk,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line is next.
    #[default]
    Size,
    /// This many bytes of chunk data are still to come (never 0).
    Data(u64),
    /// The CRLF after a chunk's data is next.
    DataEnd,
    /// The zero-size chunk was read; trailer fields up to a blank line are next.
    Trailers,
    /// The body ended.
    Done,
}

/// One step of [`ChunkedDecoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// More input is needed.
    NeedMore,
    /// The body ended; what follows in the buffer belongs to the next response.
    End,
}

impl ChunkedDecoder {
    /// Takes what it can from the front of `buf`. After body bytes it also reads as far past
    /// them as `buf` allows, so [`Self::is_done`] tells at once when they were the last.
    ///
    /// # Errors
    /// [`WireError::MalformedChunk`] for a size line or trailer that is malformed or too long.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        self.advance(buf)?;
        match self.state {
            Chunk::Done => Ok(Decoded::End),
            Chunk::Data(left) if !buf.is_empty() => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let left = left - take as u64;
                self.state = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                let data = buf.split_to(take).freeze();
                self.advance(buf)?;
                Ok(Decoded::Data(data))
            }
            _ => Ok(Decoded::NeedMore),
        }
    }

    /// The terminating chunk and its trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Reads size lines, the CRLF after data and trailers for as long as `buf` holds them
    /// whole; stops at chunk data, at the end, or when more input is needed.
    fn advance(&mut self, buf: &mut BytesMut) -> Result<(), WireError> {
        loop {
            match self.state {
                Chunk::Data(_) | Chunk::Done => return Ok(()),
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(());
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::MalformedChunk);
                    }
                    buf.advance(2);
                    self.state = Chunk::Size;
                }
                Chunk::Size => {
                    let Some(size) = take_size_line(buf)? else {
                        return Ok(());
                    };
                    self.state = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Trailers => match skip_trailer_line(buf)? {
                    None => return Ok(()),
                    Some(true) => self.state = Chunk::Done,
                    Some(false) => {}
                },
            }
        }
    }
}

/// Drops one trailer line: `Some(true)` for the blank line that ends the body, `None` while no
/// whole line is buffered.
fn skip_trailer_line(buf: &mut BytesMut) -> Result<Option<bool>, WireError> {
    let Some(end) = find_crlf(buf) else {
        if buf.len() > MAX_CHUNK_META_BYTES {
            return Err(WireError::MalformedChunk);
        }
        return Ok(None);
    };
    if end > 0 && !buf[..end].contains(&b':') {
        return Err(WireError::MalformedChunk);
    }
    buf.advance(end + 2);
    Ok(Some(end == 0))
}

/// Parses `HEX[;extensions]CRLF` off the front of `buf`; `None` until the line is complete.
fn take_size_line(buf: &mut BytesMut) -> Result<Option<u64>, WireError> {
    let Some(end) = find_crlf(buf) else {
        if buf.len() > MAX_CHUNK_META_BYTES {
            return Err(WireError::MalformedChunk);
        }
        return Ok(None);
    };
    let line = &buf[..end];
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let rest = &line[digits_end..];
    let rest_ok = rest.is_empty() || matches!(rest.first(), Some(b';' | b' ' | b'\t'));
    if digits_end == 0 || digits_end > 16 || !rest_ok {
        return Err(WireError::MalformedChunk);
    }
    let digits = std::str::from_utf8(&line[..digits_end]).map_err(|_| WireError::MalformedChunk)?;
    let size = u64::from_str_radix(digits, 16).map_err(|_| WireError::MalformedChunk)?;
    buf.advance(end + 2);
    Ok(Some(size))
}

/// Where the first CRLF in `buf` starts; a bare LF is not a line end here.
fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|pair| pair == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, method: &Method) -> Result<Option<Head>, WireError> {
        parse_response_head(&mut BytesMut::from(text), method, &mut NameCache::default())
    }

    fn head(text: &str) -> Head {
        match parse(text, &Method::GET) {
            Ok(Some(head)) => head,
            other => panic!("{text:?} did not parse: {other:?}"),
        }
    }

    #[test]
    fn request_head_is_written_as_sent() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut buf = Vec::new();
        let target = PathAndQuery::from_static("/p?q=1");
        let host = HeaderValue::from_static("up:8080");
        let added = [(
            HeaderName::from_static("x-real-ip"),
            HeaderValue::from_static("10.0.0.7"),
        )];
        encode_request_head(
            &mut buf,
            &Method::GET,
            &target,
            &headers,
            &added,
            Some(&host),
        );
        assert_eq!(
            String::from_utf8_lossy(&buf),
            "GET /p?q=1 HTTP/1.1\r\nhost: up:8080\r\nx-a: 1\r\nx-a: 2\r\nx-real-ip: 10.0.0.7\r\n\r\n"
        );
        headers.insert(header::HOST, HeaderValue::from_static("client.example"));
        buf.clear();
        encode_request_head(&mut buf, &Method::GET, &target, &headers, &[], Some(&host));
        assert_eq!(buf.windows(4).filter(|w| w == b"host").count(), 1);
    }

    #[test]
    fn head_is_split_off_and_the_rest_stays() {
        let mut buf =
            BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nokNEXT");
        let head = parse_response_head(&mut buf, &Method::GET, &mut NameCache::default())
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..], b"okNEXT");
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.reusable);
        assert_eq!(head.response.headers()["x-a"], "b");
    }

    #[test]
    fn hop_by_hop_headers_the_proxy_always_drops_are_left_out() {
        let dropped = head(
            "HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\n\
             Transfer-Encoding: chunked\r\nX-A: b\r\n\r\n",
        );
        let names: Vec<_> = dropped
            .response
            .headers()
            .keys()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(names, ["x-a"]);
        for kept in ["close", "keep-alive, x-a", "upgrade"] {
            let head = head(&format!(
                "HTTP/1.1 200 OK\r\nConnection: {kept}\r\nContent-Length: 0\r\n\r\n"
            ));
            assert_eq!(head.response.headers()["connection"], kept);
        }
    }

    #[test]
    fn cached_names_follow_what_each_response_spells() {
        let mut names = NameCache::default();
        let mut parse_with = |text: &str| {
            let mut buf = BytesMut::from(text);
            parse_response_head(&mut buf, &Method::GET, &mut names)
                .unwrap()
                .unwrap()
                .response
        };
        let first = parse_with("HTTP/1.1 200 OK\r\nX-One: 1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(first.headers()["x-one"], "1");
        let second = parse_with("HTTP/1.1 200 OK\r\nX-Two: 2\r\nContent-Length: 0\r\n\r\n");
        assert!(!second.headers().contains_key("x-one"));
        assert_eq!(second.headers()["x-two"], "2");
        let third =
            parse_with("HTTP/1.1 200 OK\r\nx-two: 3\r\nX-Extra: e\r\nContent-Length: 0\r\n\r\n");
        let keys: Vec<_> = third.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["x-two", "x-extra", "content-length"]);
        let bad = parse_response_head(
            &mut BytesMut::from("HTTP/1.1 200 OK\r\nX-Tw\x01: 3\r\n\r\n"),
            &Method::GET,
            &mut names,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn partial_head_waits_and_garbage_fails() {
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\nContent-Le", &Method::GET),
            Ok(None)
        ));
        for bad in [
            "HELLO\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "HTTP/2.0 200 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad, &Method::GET).unwrap_err(),
                WireError::MalformedHead,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn oversized_heads_fail() {
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "x-h: v\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            parse(&many, &Method::GET).unwrap_err(),
            WireError::HeadTooLarge
        );
        let long = format!("HTTP/1.1 200 OK\r\nx-h: {}", "v".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            parse(&long, &Method::GET).unwrap_err(),
            WireError::HeadTooLarge
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = |text: &str| head(text).framing;
        assert_eq!(
            h("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            h("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            h("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(
            h("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(
            h("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Framing::UntilClose
        );
        assert_eq!(h("HTTP/1.1 200 OK\r\n\r\n"), Framing::UntilClose);
        assert_eq!(
            h("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            Framing::Empty
        );
        assert_eq!(h("HTTP/1.1 304 Not Modified\r\n\r\n"), Framing::Empty);
        assert_eq!(
            h("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"),
            Framing::Empty
        );
        let to_head = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            &Method::HEAD,
        );
        assert_eq!(to_head.unwrap().unwrap().framing, Framing::Empty);
    }

    #[test]
    fn bad_lengths_fail() {
        for bad in ["abc", "5, 6", "-1", "+5", "", "99999999999999999999999"] {
            let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                parse(&text, &Method::GET).unwrap_err(),
                WireError::InvalidContentLength,
                "{bad:?}"
            );
        }
        let two = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(
            parse(two, &Method::GET).unwrap_err(),
            WireError::InvalidContentLength
        );
    }

    #[test]
    fn reuse_needs_http_11_a_delimited_body_and_no_close() {
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").reusable);
        assert!(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").reusable);
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").reusable);
        assert!(
            !head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n")
                .reusable
        );
        assert!(!head("HTTP/1.1 200 OK\r\n\r\n").reusable);
        let both =
            head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(!both.reusable);
        assert_eq!(both.framing, Framing::Chunked);
        assert!(!both.response.headers().contains_key(header::CONTENT_LENGTH));
    }

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), WireError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::End => return Ok((body, buf.to_vec())),
                Decoded::NeedMore => {
                    assert!(fed < input.len(), "ran out of input");
                    let next = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn chunked_decodes_at_every_split() {
        let input = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
        for step in 1..input.len() {
            let (body, rest) = decode_all(input, step).unwrap();
            assert_eq!(body, b"hello, world", "step {step}");
            assert!(b"NEXT".starts_with(&rest), "step {step}");
        }
    }

    /// Bytes an upstream might send, damaged at random: nothing may panic, and whatever parses
    /// must be self-consistent (a head never longer than the input, values inside it).
    #[test]
    fn damaged_responses_never_panic() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x9a7e);
        let seeds: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.0 103 Early\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No\r\nConnection: close\r\n\r\n",
        ];
        let special = b"\r\n:; \t,0123456789abcdefxHTTP/1.\x00\x7f\xff";
        let mut names = NameCache::default();
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].to_vec();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..=bytes.len());
                let byte = special[rng.random_range(0..special.len())];
                match rng.random_range(0..3) {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, byte),
                }
            }
            let method = if round % 7 == 0 {
                Method::HEAD
            } else {
                Method::GET
            };
            let mut buf = BytesMut::from(&bytes[..]);
            if let Ok(Some(head)) = parse_response_head(&mut buf, &method, &mut names) {
                assert!(buf.len() < bytes.len());
                if head.framing == Framing::Chunked {
                    let mut decoder = ChunkedDecoder::default();
                    while let Ok(Decoded::Data(_)) = decoder.decode(&mut buf) {}
                }
            }
        }
    }

    #[test]
    fn malformed_chunks_fail() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"11111111111111111\r\n",
            b"5zz\r\nhello\r\n0\r\n\r\n",
            b"0\r\nnot a trailer\r\n\r\n",
        ] {
            assert_eq!(
                decode_all(bad, bad.len()).unwrap_err(),
                WireError::MalformedChunk,
                "{bad:?}"
            );
        }
        let endless = vec![b'1'; MAX_CHUNK_META_BYTES + 2];
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&endless[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap_err(),
            WireError::MalformedChunk
        );
    }
}
