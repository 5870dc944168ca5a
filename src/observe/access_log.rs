//! The access-log line (SPEC §7): one compact JSON object per request, serialised straight into a
//! byte buffer — no `tracing` event, no intermediate map — and handed to
//! [`super::log_writer::AccessLog`], which writes it off the request path.
//!
//! A line is built in two steps because `bytes_out` is known only when the response body ends:
//! [`AccessFields::begin`] writes everything the response head knows into a [`PendingLine`], and
//! [`PendingLine::finish`] adds the byte counts and closes the object.
//!
//! Keys, in order: `time` (RFC 3339 UTC, milliseconds, taken when the response head is ready),
//! `request_id`, `client_ip`, `method`, `path` (with the query, credential-looking values
//! redacted), `route`, `upstream`, `status`, `identity`, `auth_method`, `duration_ms` (request
//! head to response head, three decimals), `user_agent` (at most [`USER_AGENT_MAX_BYTES`]), `http`
//! (`"1.1"`, `"2"`), `tls` (`"1.3"`, `"1.2"` or `null`), `bytes_in`, `bytes_out`. Absent values
//! are `null`, numbers are numbers; no header value but the User-Agent is ever written.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use http::Method;
use time::OffsetDateTime;

use super::json_line::JsonLine;
use super::redact_query::redact_query;
use crate::auth::AuthMethod;
use crate::http::forwarded::RequestId;

/// The longest User-Agent written; a longer one is cut (a client picks its length, the log's
/// reader should not have to).
pub(crate) const USER_AGENT_MAX_BYTES: usize = 256;

/// Room for a typical line, so building it rarely reallocates (a line with a 50-byte path, a
/// UUID request id and curl's User-Agent is about 400 bytes).
const LINE_CAPACITY: usize = 512;

/// What the response head knows about a request, borrowed for the moment the line is begun.
#[derive(Debug, Clone, Copy)]
pub struct AccessFields<'a> {
    /// The request id (echoed as `x-request-id`): a client's that passed
    /// `forwarded::valid_request_id`, or one the gateway generated.
    pub request_id: &'a RequestId,
    /// The client IP under the trusted-proxy rule, as the gateway formatted it from the address
    /// (usually the connection's peer, formatted once per connection).
    pub client_ip: &'a str,
    /// The request method (a token: never a quote, backslash or control); `None` for a head
    /// that could not be parsed.
    pub method: Option<&'a Method>,
    /// The request path as sent; `None` for a head that could not be parsed.
    pub path: Option<&'a str>,
    /// The query as sent; credential-looking values are redacted when written.
    pub query: Option<&'a str>,
    /// The matched route's label: its configured path, made unique as the metrics and audit
    /// lines have it ([`super::labels`]); `None` when no route matched.
    pub route: Option<&'a str>,
    /// The upstream called.
    pub upstream: Option<&'a str>,
    /// The response status.
    pub status: u16,
    /// Who the caller is, once authenticated.
    pub identity: Option<&'a str>,
    /// How the caller authenticated.
    pub auth_method: Option<AuthMethod>,
    /// From the request head to the response head.
    pub duration: Duration,
    /// The `User-Agent` header's bytes (not necessarily UTF-8).
    pub user_agent: Option<&'a [u8]>,
    /// The HTTP version, `"1.1"` or `"2"`.
    pub http: &'static str,
    /// The negotiated TLS version; `None` on the cleartext listener.
    pub tls: Option<&'static str>,
}

/// An access line whose body has not ended yet: every field but the byte counts, object open.
#[derive(Debug)]
pub struct PendingLine(Vec<u8>);

impl AccessFields<'_> {
    /// Writes every field the response head knows, stamped `now`.
    pub fn begin(&self, now: SystemTime) -> PendingLine {
        let mut buf = Vec::with_capacity(LINE_CAPACITY);
        let mut line = JsonLine::open(&mut buf);
        // `plain`: values that cannot hold a quote, a backslash or a control (see the fields).
        line.plain("time", &rfc3339_millis(now));
        line.plain("request_id", self.request_id.as_str().as_bytes());
        line.plain("client_ip", self.client_ip.as_bytes());
        match self.method {
            Some(method) => line.plain("method", method.as_str().as_bytes()),
            None => line.null("method"),
        }
        self.write_path(&mut line);
        line.opt_str("route", self.route);
        line.opt_str("upstream", self.upstream);
        line.u64("status", u64::from(self.status));
        line.opt_str("identity", self.identity);
        match self.auth_method {
            Some(method) => line.plain("auth_method", method.as_str().as_bytes()),
            None => line.null("auth_method"),
        }
        let micros = u64::try_from(self.duration.as_micros()).unwrap_or(u64::MAX);
        // Microseconds, rounded to the nearest thousandth of a millisecond.
        line.thousandths("duration_ms", micros);
        match self.user_agent {
            Some(agent) => line.bytes("user_agent", truncate(agent, USER_AGENT_MAX_BYTES)),
            None => line.null("user_agent"),
        }
        line.plain("http", self.http.as_bytes());
        match self.tls {
            Some(tls) => line.plain("tls", tls.as_bytes()),
            None => line.null("tls"),
        }
        PendingLine(buf)
    }

    fn write_path(&self, line: &mut JsonLine<'_>) {
        match (self.path, self.query) {
            (Some(path), Some(query)) => {
                let mut target = String::with_capacity(path.len() + 1 + query.len());
                target.push_str(path);
                target.push('?');
                target.push_str(&redact_query(query));
                line.str("path", &target);
            }
            (Some(path), None) => line.str("path", path),
            (None, _) => line.null("path"),
        }
    }
}

impl PendingLine {
    /// Adds the byte counts and closes the object; the result is one `\n`-terminated line.
    pub fn finish(mut self, bytes_in: u64, bytes_out: u64) -> Vec<u8> {
        let mut line = JsonLine::reopen(&mut self.0);
        line.u64("bytes_in", bytes_in);
        line.u64("bytes_out", bytes_out);
        line.close();
        self.0
    }
}

/// At most `max` bytes of `value`, never ending inside a UTF-8 sequence that was whole before.
fn truncate(value: &[u8], max: usize) -> &[u8] {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    // Back off over continuation bytes (10xxxxxx) to the start of the cut sequence.
    while end > 0 && end > max.saturating_sub(3) && value[end] & 0xc0 == 0x80 {
        end -= 1;
    }
    if value[end] & 0xc0 == 0x80 {
        // Not UTF-8 here anyway: cut where asked.
        return &value[..max];
    }
    &value[..end]
}

/// `2026-12-05T10:11:12.345Z`: RFC 3339, UTC, milliseconds; digits and punctuation only, so it
/// needs no escaping. A clock before 1970 writes the epoch.
fn rfc3339_millis(now: SystemTime) -> [u8; 24] {
    let (secs, millis) = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or((0, 0), |since| (since.as_secs(), since.subsec_millis()));
    let mut text = [0u8; 24];
    text[..20].copy_from_slice(&second_prefix(secs));
    digits(&mut text[20..23], millis);
    text[23] = b'Z';
    text
}

/// `2026-12-05T10:11:12.` for a Unix second, remembered by each thread: the lines of one second
/// share it, so the calendar arithmetic runs once a second, not once a line (as NGINX caches its
/// log time).
fn second_prefix(secs: u64) -> [u8; 20] {
    thread_local! {
        static LAST: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    LAST.with(|last| {
        let (cached, prefix) = last.get();
        if cached == secs {
            return prefix;
        }
        let prefix = format_second(secs);
        last.set((secs, prefix));
        prefix
    })
}

/// [`second_prefix`] computed.
fn format_second(secs: u64) -> [u8; 20] {
    let now = i64::try_from(secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut text = [0u8; 20];
    let year = u32::try_from(now.year()).unwrap_or(0).min(9999);
    digits(&mut text[0..4], year);
    text[4] = b'-';
    digits(&mut text[5..7], u32::from(u8::from(now.month())));
    text[7] = b'-';
    digits(&mut text[8..10], u32::from(now.day()));
    text[10] = b'T';
    digits(&mut text[11..13], u32::from(now.hour()));
    text[13] = b':';
    digits(&mut text[14..16], u32::from(now.minute()));
    text[16] = b':';
    digits(&mut text[17..19], u32::from(now.second()));
    text[19] = b'.';
    text
}

/// Writes `value` zero-padded into `out` (as many digits as `out` is long).
fn digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(request_id: &'a RequestId, method: &'a Method) -> AccessFields<'a> {
        AccessFields {
            request_id,
            client_ip: "192.0.2.7",
            method: Some(method),
            path: Some("/api/v1/event"),
            query: Some("access_token=sekrit&page=2"),
            route: Some("/api"),
            upstream: None,
            status: 200,
            identity: Some("ci-bot"),
            auth_method: Some(AuthMethod::Token),
            duration: Duration::from_micros(1_234_567),
            user_agent: Some(b"curl/8.5\xff"),
            http: "2",
            tls: Some("1.3"),
        }
    }

    #[test]
    fn a_line_has_every_field_typed_and_in_order() {
        let now = time::macros::datetime!(2026-12-05 09:08:07.065 UTC);
        let id = RequestId::from_client(&http::HeaderValue::from_static("01J9ZX")).unwrap();
        let line = fields(&id, &Method::GET).begin(now.into()).finish(12, 3456);
        let text = String::from_utf8(line).unwrap();
        assert_eq!(
            text,
            "{\"time\":\"2026-12-05T09:08:07.065Z\",\"request_id\":\"01J9ZX\",\
             \"client_ip\":\"192.0.2.7\",\"method\":\"GET\",\
             \"path\":\"/api/v1/event?access_token=REDACTED&page=2\",\"route\":\"/api\",\
             \"upstream\":null,\"status\":200,\"identity\":\"ci-bot\",\"auth_method\":\"token\",\
             \"duration_ms\":1234.567,\"user_agent\":\"curl/8.5\\ufffd\",\"http\":\"2\",\
             \"tls\":\"1.3\",\"bytes_in\":12,\"bytes_out\":3456}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["status"], 200);
        assert!(!text.contains("sekrit"));
    }

    #[test]
    fn the_remembered_second_follows_the_clock() {
        let at = |millis: u64| {
            let text = rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(millis));
            String::from_utf8(text.to_vec()).unwrap()
        };
        assert_eq!(at(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(at(1_999), "1970-01-01T00:00:01.999Z");
        assert_eq!(at(2_001), "1970-01-01T00:00:02.001Z");
        assert_eq!(
            at(1_000),
            "1970-01-01T00:00:01.000Z",
            "a clock stepped back"
        );
        assert_eq!(at(86_400_000 * 365), "1971-01-01T00:00:00.000Z");
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(&rfc3339_millis(before_1970), b"1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_long_user_agent_is_cut_on_a_character_boundary() {
        let agent = "é".repeat(200);
        let cut = truncate(agent.as_bytes(), USER_AGENT_MAX_BYTES);
        assert_eq!(cut.len(), USER_AGENT_MAX_BYTES);
        let odd = format!("x{agent}");
        let cut = truncate(odd.as_bytes(), USER_AGENT_MAX_BYTES);
        assert_eq!(cut.len(), USER_AGENT_MAX_BYTES - 1, "the half é is dropped");
        assert!(std::str::from_utf8(cut).is_ok());
        let binary = [0x80u8; 300];
        assert_eq!(truncate(&binary, 256).len(), 256);
    }

    #[test]
    fn injected_newlines_and_quotes_stay_inside_one_line() {
        // The fields written without escaping cannot carry a quote: the method is a token, the
        // id was validated (a client's `a"b` is replaced by a generated one).
        let mut sent = http::HeaderMap::new();
        sent.insert(
            "x-request-id",
            http::HeaderValue::from_static("a\"},{\"x\":1"),
        );
        let id = crate::http::forwarded::request_id(&sent);
        assert!(Method::from_bytes(b"GET\"").is_err());
        let method = Method::from_bytes(b"PURGE").unwrap();
        let mut f = fields(&id, &method);
        f.path = Some("/a\"}\n{\"status\":500");
        f.user_agent = Some(b"evil\r\n{\"x\":1}");
        f.query = None;
        let text = String::from_utf8(f.begin(SystemTime::UNIX_EPOCH).finish(0, 0)).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["path"], "/a\"}\n{\"status\":500");
        assert_eq!(parsed["status"], 200);
        assert_eq!(parsed["time"], "1970-01-01T00:00:00.000Z");
    }
}
