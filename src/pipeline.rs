//! The request path, top to bottom. [`handle`] never fails: it loads the runtime once, runs
//! [`route_and_forward`] — the spine, one named step per concern — turns any [`GatewayError`]
//! into its JSON response, and finishes the response (request id, metrics, audit, access log)
//! exactly once.
//!
//! The request body is kept apart from the head: only forwarding takes it. When gatehouse
//! answers without reading it (a refusal, a redirect, a route that does not pass bodies), `handle`
//! settles it on HTTP/1.1 as SPEC §8.13 says: a small rest is read and discarded so the connection
//! stays usable, anything else gets `Connection: close`. A HEAD response never carries a body
//! (§8.10), gatehouse's own errors included.
//!
//! Steps, in order:
//! 1. plain-listener redirect (cleartext listener in `redirect` mode)
//! 2. `http::sanitize` — smuggling shapes 400, header size 431
//! 3. `http::normalize` — the path every later step sees and the upstream receives
//! 4. `auth::login` — the `[auth.session]` login/session/logout endpoints answer here
//! 5. `router` — 404 / 405; `redirect` and `respond` routes answer here
//! 6. authentication and authorization — credential kinds per route (a verified client
//!    certificate first, on `mtls` routes), roles, write gate
//! 7. WebSocket Origin rule (403)
//! 8. rate limiting (429)
//! 9. audit gate — a write is refused (503) while the audit log cannot be written
//! 10. `proxy::forward` — 413 / 502 / 504, streamed response or WebSocket tunnel
//!
//! The steps live in `pipeline/` by concern: `route` (session endpoints, route table), `admit`
//! (steps 6–8), `forward` (the upstream request), `answer` (gatehouse's own responses), `settle`
//! (§8.13), `finish` (headers, byte counts, access line), `host`.

mod admit;
mod answer;
mod finish;
mod forward;
mod host;
mod route;
mod settle;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use crate::auth::AuthMethod;
use crate::error::GatewayError;
use crate::http::body::Body;
use crate::http::counted::ByteCount;
use crate::http::{forwarded, sanitize};
use crate::observe::audit;
use crate::ratelimit::RateHeaders;
use crate::runtime::{Runtime, Shared};
use admit::{authenticate, authorize, check_origin, limit_rate, strip_client_identity};
use finish::{Seen, count_and_log, finish};
use forward::{forward, set_upstream_headers};
use route::{Routed, find_route, normalize, serve_session_endpoint};
use settle::BodyFraming;

/// What the server knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// `"https"` on the TLS listener, `"http"` on the cleartext one.
    pub scheme: &'static str,
    /// On the cleartext listener in redirect mode: the TLS port to redirect to.
    pub redirect_to_port: Option<u16>,
    /// The identity of the client certificate verified at this connection's handshake.
    pub client_cert: Option<Arc<crate::tls::client_auth::ClientCert>>,
    /// The negotiated TLS version (`"1.3"`, `"1.2"`); `None` on the cleartext listener.
    pub tls_version: Option<&'static str>,
}

/// Per-request facts every step and the final log line share.
#[derive(Debug)]
pub struct RequestCtx {
    /// Kept from the client if valid, else generated; echoed in the response.
    pub request_id: HeaderValue,
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub peer_trusted: bool,
    /// The client IP under the trusted-proxy rule.
    pub client_ip: IpAddr,
    /// `"https"` or `"http"`.
    pub scheme: &'static str,
    /// When handling started.
    pub start: Instant,
    /// Index of the matched route.
    pub route: Option<usize>,
    /// Who the caller is and how they authenticated, once known.
    pub identity: Option<(Arc<str>, AuthMethod)>,
    /// `RateLimit-Policy` and `RateLimit` for the response, on rate-limited routes.
    pub rate_headers: Option<RateHeaders>,
    /// The upstream called and how long it took to answer with headers.
    pub upstream: Option<(Arc<str>, std::time::Duration)>,
    /// Request body bytes read by the proxy, once the body is forwarded.
    pub bytes_in: Option<ByteCount>,
}

impl RequestCtx {
    fn new<B>(req: &Request<B>, conn: &ConnInfo, rt: &Runtime) -> Self {
        let peer = conn.peer.ip().to_canonical();
        Self {
            request_id: forwarded::request_id(req.headers()),
            peer,
            peer_trusted: rt.trusted_proxies.contains(peer),
            client_ip: rt.trusted_proxies.client_ip(peer, req.headers()),
            scheme: conn.scheme,
            start: Instant::now(),
            route: None,
            identity: None,
            rate_headers: None,
            upstream: None,
            bytes_in: None,
        }
    }

    fn request_id_str(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }
}

/// Handles one request end to end. Never fails: errors become JSON responses.
pub async fn handle(
    req: Request<Incoming>,
    conn: &ConnInfo,
    shared: &Arc<Shared>,
) -> Response<Body> {
    let rt = shared.runtime.load_full();
    let mut ctx = RequestCtx::new(&req, conn, &rt);
    let method = req.method().clone();
    // Shares the request line's bytes; the audit line needs the query too.
    let uri = req.uri().clone();
    let seen = Seen::of(&req);
    let framing = BodyFraming::of(&req);
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let head = Request::from_parts(parts, ());
    let result = route_and_forward(head, &mut body, conn, &mut ctx, &rt).await;
    let failed = result.is_err();
    let denial = result.as_ref().is_err_and(audit::is_auth_denial);
    let mut response = result.unwrap_or_else(|error| refuse(error, &ctx, &rt, shared));
    framing.settle(body, failed, &mut response).await;
    if method == Method::HEAD {
        answer::strip_head_body(&mut response);
    }
    finish(&ctx, &rt, &mut response);
    // Before the response goes back: a write's audit line is appended first (SPEC §7).
    audit::record(&ctx, &rt, &method, &uri, response.status(), denial).await;
    let label = rt.route_labels.label(ctx.route);
    let upstream = ctx.upstream.as_ref().map(|(name, took)| (name, *took));
    shared.metrics.traffic.record(
        label,
        &method,
        response.status().as_u16(),
        ctx.start.elapsed(),
        upstream,
    );
    count_and_log(response, seen, &ctx, &rt, conn, shared, label.clone())
}

/// The spine: the steps of the module doc, in its order; each `?` may end the request with an
/// error response, each early `return` with gatehouse's own answer.
///
/// `body` is the client's body; only forwarding takes it, so whatever answers earlier leaves it
/// for [`BodyFraming::settle`].
async fn route_and_forward(
    mut req: Request<()>,
    body: &mut Option<Incoming>,
    conn: &ConnInfo,
    ctx: &mut RequestCtx,
    rt: &Runtime,
) -> Result<Response<Body>, GatewayError> {
    if let Some(port) = conn.redirect_to_port {
        return Ok(answer::https_redirect(&req, port));
    }
    sanitize::check(&req, rt.config.limits.max_header_bytes)?;
    // A cheap clone (shared bytes), so the path stays borrowed while the headers change.
    let uri = req.uri().clone();
    let path = normalize(&uri)?;
    if let Some(response) = serve_session_endpoint(&req, &path, body, ctx, rt).await? {
        return Ok(response);
    }
    let proxy = match find_route(&req, &path, ctx, rt)? {
        Routed::Proxy(proxy) => proxy,
        Routed::Answered(response) => return Ok(response),
    };
    let route = proxy.route;
    let cookie = strip_client_identity(req.headers_mut(), rt);
    let caller = authenticate(&req, route, &path, cookie.as_deref(), conn, ctx, rt).await?;
    let caller = caller.as_ref();
    authorize(req.method(), route, caller, ctx, rt)?;
    // Before the rate limit: a handshake refused for its Origin spends no token (SPEC §4).
    check_origin(&req, route)?;
    limit_rate(route, caller, ctx, rt).await?;
    audit::admit(rt, req.method())?;
    set_upstream_headers(req.headers_mut(), caller, rt);
    forward(req, body, proxy, &path, ctx, rt).await
}

/// A refused request: logged (debug), counted under its route, answered as JSON that carries
/// the request id.
fn refuse(error: GatewayError, ctx: &RequestCtx, rt: &Runtime, shared: &Shared) -> Response<Body> {
    tracing::debug!(request_id = ctx.request_id_str(), %error, "request refused");
    shared
        .metrics
        .refused(&error, rt.route_labels.label(ctx.route));
    error.into_response(ctx.request_id_str())
}
