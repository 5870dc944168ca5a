//! The last touches every response gets, once: its common headers, and the byte count and
//! access line that complete when its body ends.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, Version, header};

use super::context::{ConnInfo, RequestCtx};
use crate::http::body::Body;
use crate::http::counted::{ByteCount, OnEnd};
use crate::http::forwarded::X_REQUEST_ID;
use crate::observe::access_log::AccessFields;
use crate::runtime::{Runtime, Shared};

/// `RateLimit-Policy` (IETF httpapi draft).
const RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (IETF httpapi draft).
const RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// Headers every response carries.
pub(super) fn finish(ctx: &RequestCtx, rt: &Runtime, response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(X_REQUEST_ID, never_indexed(ctx.request_id.header()));
    if let Some(rate) = &ctx.rate_headers {
        response
            .headers_mut()
            .insert(RATELIMIT_POLICY, rate.policy.clone());
        response
            .headers_mut()
            .insert(RATELIMIT, never_indexed(&rate.state));
    }
    if rt.config.server.server_header {
        response
            .headers_mut()
            .insert(header::SERVER, HeaderValue::from_static("gatehouse"));
    }
    // HSTS on the TLS listener only (RFC 6797 §7.2: ignored over cleartext), and never over an
    // upstream's own policy (SPEC §8.11).
    if ctx.scheme == "https"
        && let Some(hsts) = &rt.config.server.hsts
        && let header::Entry::Vacant(slot) = response
            .headers_mut()
            .entry(header::STRICT_TRANSPORT_SECURITY)
    {
        slot.insert(hsts.clone());
    }
}

/// A value that differs on every response (request id, remaining budget), marked so HTTP/2's
/// HPACK encoder sends it as a literal instead of adding it to the connection's header table:
/// there it would never match again, only evict entries that do and lengthen the encoder's
/// lookups (`h2::hpack::Header::value_eq` was 2% of an h2 profile). HTTP/1.1 ignores the mark.
fn never_indexed(value: &HeaderValue) -> HeaderValue {
    let mut value = value.clone();
    value.set_sensitive(true);
    value
}

/// What the access line needs from the request head; kept only when the line will be written
/// (`RUST_LOG` enables target `gatehouse::access` at INFO).
pub(super) struct Seen {
    method: Method,
    /// A cheap clone (shared bytes): path and query.
    uri: http::Uri,
    user_agent: Option<HeaderValue>,
    version: Version,
}

impl Seen {
    pub(super) fn of<B>(req: &Request<B>) -> Option<Self> {
        tracing::enabled!(target: "gatehouse::access", tracing::Level::INFO).then(|| Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            version: req.version(),
        })
    }
}

/// A request whose response head is ready, as the access line and the byte counters see it.
pub(super) struct Answered<'a> {
    pub(super) ctx: &'a RequestCtx,
    /// From the request head to the response head.
    pub(super) took: std::time::Duration,
    /// The route's metrics label.
    pub(super) route_label: Arc<str>,
}

/// Counts the response body and, when it ends (or is dropped), adds the request and response
/// bytes to the route's counters and sends the access line — begun here, while the head's facts
/// are at hand — to the writer. Exactly once per request.
pub(super) fn count_and_log(
    response: Response<Body>,
    seen: Option<Seen>,
    answered: Answered<'_>,
    rt: &Runtime,
    conn: &ConnInfo,
    shared: &Arc<Shared>,
) -> Response<Body> {
    let Answered {
        ctx,
        took,
        route_label,
    } = answered;
    let pending = seen.map(|seen| {
        let behind_proxy;
        let client_ip = if ctx.client_ip == conn.peer_ip.ip() {
            conn.peer_ip.as_str()
        } else {
            behind_proxy = ctx.client_ip.to_string();
            &behind_proxy
        };
        AccessFields {
            request_id: &ctx.request_id,
            client_ip,
            method: Some(&seen.method),
            path: Some(seen.uri.path()),
            query: seen.uri.query(),
            route: rt.route_labels.matched(ctx.route).map(|label| &**label),
            upstream: ctx.upstream.as_ref().map(|(name, _)| &**name),
            status: response.status().as_u16(),
            identity: ctx.identity.as_ref().map(|(subject, _)| &**subject),
            auth_method: ctx.identity.as_ref().map(|(_, method)| *method),
            duration: took,
            user_agent: seen.user_agent.as_ref().map(HeaderValue::as_bytes),
            http: http_version(seen.version),
            tls: conn.tls_version,
        }
        .begin(std::time::SystemTime::now())
    });
    let bytes_in = ctx.bytes_in.clone();
    let shared = shared.clone();
    response.map(|body| {
        let on_end = move |bytes_out| {
            let bytes_in = bytes_in.as_ref().map_or(0, ByteCount::get);
            shared
                .metrics
                .traffic
                .bytes(&route_label, bytes_in, bytes_out);
            if let Some(line) = pending {
                shared.access_log.send(line.finish(bytes_in, bytes_out));
            }
        };
        http_body_util::BodyExt::boxed(OnEnd::new(body, on_end))
    })
}

/// The access log's `http` field.
fn http_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}
