//! Hand-written HTTP/1.1 over a TLS stream, for requests a well-behaved client library refuses
//! to send (smuggling shapes, unnormalised paths, folded headers, partial heads).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::within;

/// How long [`read_until_closed`] waits for the peer to close.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What came back on a raw connection: the first response parsed, plus everything read.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The first response's body (de-chunked when `Transfer-Encoding: chunked`).
    pub body: Vec<u8>,
    /// Every byte read from the connection.
    pub bytes: Vec<u8>,
    /// Whether the gateway closed the connection within [`CLOSE_WAIT`].
    pub closed: bool,
}

impl RawResponse {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// How many HTTP/1.1 status lines came back.
    pub fn response_count(&self) -> usize {
        let text = String::from_utf8_lossy(&self.bytes);
        text.match_indices("HTTP/1.1 ")
            .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
            .count()
    }

    /// Checks this is a gateway error (`status`, JSON with `content-type: application/json`,
    /// `request_id` equal to `x-request-id`) and returns the `error` text.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "status; response: {:?}", self.text());
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "content-type {content_type:?}; body {:?}",
            self.text()
        );
        let json: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", self.text()));
        assert_eq!(
            json["request_id"].as_str(),
            self.header("x-request-id"),
            "JSON request_id equals the x-request-id header"
        );
        json["error"].as_str().expect("error text").to_owned()
    }
}

/// Writes `request`, then reads until the peer closes (or [`CLOSE_WAIT`] passes).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> RawResponse {
    within("writing raw request", stream.write_all(request))
        .await
        .unwrap();
    within("flushing raw request", stream.flush())
        .await
        .unwrap();
    let (bytes, closed) = read_until_closed(stream).await;
    parse(bytes, closed)
}

/// Reads until EOF, a read error (a reset counts as closed) or [`CLOSE_WAIT`].
pub async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (bytes, false),
            Ok(Ok(0) | Err(_)) => return (bytes, true),
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// Parses the first response in `bytes`; status 0 if nothing parseable came back.
pub fn parse(bytes: Vec<u8>, closed: bool) -> RawResponse {
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return RawResponse {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            bytes,
            closed,
        };
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &bytes[head_end + 4..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
        bytes,
        closed,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size_text = size_text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            break;
        };
        rest = &rest[line_end + 2..];
        if size == 0 || rest.len() < size {
            body.extend_from_slice(&rest[..size.min(rest.len())]);
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    body
}
