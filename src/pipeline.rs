//! The request path, top to bottom. [`handle`] never fails: it loads the runtime once, runs
//! [`route_and_forward`] — one `?` step per concern — turns any [`GatewayError`] into its JSON
//! response, and finishes the response (request id, access log) exactly once.
//!
//! The request body is kept apart from the head: only `proxy::forward` takes it. When gatehouse
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
//! 8. rate limiting
//! 9. `proxy::forward` — 413 / 502 / 504, streamed response or WebSocket tunnel

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;

use crate::auth::roles::{self, Requirement};
use crate::auth::{Attempt, AuthMethod, Authenticated, SessionCookie, credentials, login, mtls};
use crate::config::{ProxyAction, RouteAction, RouteConfig};
use crate::error::GatewayError;
use crate::http::body::{self, Body};
use crate::http::counted::{ByteCount, CountIn, OnEnd};
use crate::http::forwarded::{self, Forwarded, X_REQUEST_ID};
use crate::http::normalize::normalize_path;
use crate::http::sanitize;
use crate::observe::access_log::AccessFields;
use crate::proxy::{self, ForwardPlan, upgrade};
use crate::ratelimit::{Allowed, Limited, RateHeaders, Subject};
use crate::router::{RouteMiss, slash_location, upstream_path};
use crate::runtime::{Runtime, Shared};

/// `RateLimit-Policy` (IETF httpapi draft).
const RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (IETF httpapi draft).
const RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

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
    pub client_cert: Option<std::sync::Arc<crate::tls::client_auth::ClientCert>>,
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
    pub identity: Option<(std::sync::Arc<str>, AuthMethod)>,
    /// `RateLimit-Policy` and `RateLimit` for the response, on rate-limited routes.
    pub rate_headers: Option<RateHeaders>,
    /// The upstream called and how long it took to answer with headers.
    pub upstream: Option<(std::sync::Arc<str>, std::time::Duration)>,
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
    let result = route_and_forward(
        Request::from_parts(parts, ()),
        &mut body,
        conn,
        &mut ctx,
        &rt,
    )
    .await;
    let failed = result.is_err();
    let denial = result
        .as_ref()
        .is_err_and(crate::observe::audit::is_auth_denial);
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(request_id = ctx.request_id_str(), %error, "request refused");
            let route = ctx.route.map(|i| &*rt.route_labels[i]);
            shared.metrics.refused(&error, route);
            error.into_response(ctx.request_id_str())
        }
    };
    framing.settle(body, failed, &mut response).await;
    if method == Method::HEAD {
        strip_head_body(&mut response);
    }
    finish(&ctx, &rt, &mut response);
    // Before the response goes back: a write's audit line is appended first (SPEC §7).
    crate::observe::audit::record(&ctx, &rt, &method, &uri, response.status(), denial).await;
    let label = &rt.route_labels[ctx.route.unwrap_or(rt.route_labels.len() - 1)];
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

/// What SPEC §8.13 needs to know about the request body once the response is chosen.
#[derive(Debug, Clone, Copy)]
struct BodyFraming {
    /// HTTP/1.x: the next request on the connection follows this body on the same byte stream.
    /// (On h2 a body left unread only resets its own stream.)
    http1: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before sending the body.
    expects_continue: bool,
    /// The request announced a body (`Content-Length` > 0 or chunked).
    has_body: bool,
}

impl BodyFraming {
    fn of(req: &Request<Incoming>) -> Self {
        Self {
            http1: req.version() < Version::HTTP_2,
            expects_continue: req
                .headers()
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
            has_body: !http_body::Body::is_end_stream(req.body()),
        }
    }

    /// Keeps an HTTP/1.1 connection in step after the response is chosen. `unread` is the body
    /// when gatehouse answered without forwarding it; `failed` says the response is an error.
    ///
    /// - An unread body is discarded like NGINX does (at most [`body::DISCARD_MAX_BYTES`] within
    ///   [`body::DISCARD_MAX_TIME`]) and the connection kept; a larger, slower or broken one — or
    ///   one the client holds back for `100 Continue` — gets `Connection: close`, so the client
    ///   never sends its next request into a connection about to close.
    /// - A body handed upstream whose forwarding failed (502/504) may be partly unread: close.
    /// - A response that already closes (smuggling shapes, 413, 431) is left alone: its body's
    ///   framing is not to be trusted, so nothing is read.
    async fn settle(self, unread: Option<Incoming>, failed: bool, response: &mut Response<Body>) {
        if !self.http1 || !self.has_body || closes(response) {
            return;
        }
        let keep = match unread {
            Some(_) if self.expects_continue => false,
            Some(rest) => {
                body::discard(rest, body::DISCARD_MAX_BYTES, body::DISCARD_MAX_TIME).await
            }
            None => !failed,
        };
        if !keep {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// Whether the response already announces `Connection: close`.
fn closes(response: &Response<Body>) -> bool {
    response
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}

/// SPEC §8.10: a HEAD response has no body. gatehouse's own bodies (errors, `respond` routes) are
/// dropped, keeping the `Content-Length` a GET would have had; an upstream's answer to HEAD is
/// already empty and keeps its headers untouched.
fn strip_head_body(response: &mut Response<Body>) {
    let body = response.body();
    if http_body::Body::is_end_stream(body) {
        return;
    }
    if let Some(length) = http_body::Body::size_hint(body).exact()
        && !response.headers().contains_key(header::CONTENT_LENGTH)
    {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    *response.body_mut() = body::empty();
}

/// The steps, in order; each `?` may end the request with an error response.
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
        return Ok(https_redirect(&req, port));
    }
    sanitize::check(&req, rt.config.limits.max_header_bytes)?;
    // A cheap clone (shared bytes) so the path can be borrowed while headers change.
    let uri = req.uri().clone();
    let path =
        normalize_path(uri.path()).map_err(|_| GatewayError::BadRequest("malformed path"))?;
    let host = request_host(&req);
    let conn_facts = (ctx.scheme, ctx.client_ip);
    if let Some(served) = login::serve(&req, &path, body, conn_facts, &rt.auth).await? {
        ctx.identity = served.identity;
        return Ok(served.response);
    }
    let index = match rt.router.find(host, req.method(), &path) {
        Ok(index) => index,
        Err(RouteMiss::AddSlash) => return Ok(redirect(&slash_location(&path, uri.query()), 301)),
        Err(RouteMiss::NotFound) => return Err(GatewayError::NoRoute(path.into_owned())),
        Err(RouteMiss::MethodNotAllowed(allow)) => {
            return Err(GatewayError::MethodNotAllowed {
                method: req.method().clone(),
                allow,
            });
        }
    };
    ctx.route = Some(index);
    let route = &rt.config.routes[index];
    let action = match &route.action {
        RouteAction::Proxy(action) => action,
        RouteAction::Redirect { location, status } => return Ok(redirect(location, *status)),
        RouteAction::Respond {
            status,
            body,
            content_type,
        } => return Ok(respond(*status, body, content_type)),
    };
    credentials::strip_identity_headers(req.headers_mut(), &rt.auth.copy_headers);
    // The session cookie is gatehouse's own: read here, never passed on (NGINX/oauth2-proxy too).
    let cookie = (rt.auth.session.as_ref()).and_then(|s| s.take_cookie(req.headers_mut()));
    let caller = authenticate(&req, route, &path, cookie.as_deref(), conn, ctx, rt).await?;
    let need = Requirement {
        roles: &route.roles,
        write_roles: &route.write_roles,
        writes_enabled: rt.config.auth.write_actions,
    };
    // Known before authorization, so a 403 is logged and audited with who was refused.
    if let Some(caller) = &caller {
        ctx.identity = Some((caller.identity.subject.clone(), caller.identity.method));
    }
    roles::authorize(caller.as_ref().map(|c| &c.identity), req.method(), &need)?;
    if let Some(caller) = &caller {
        pass_identity(req.headers_mut(), caller, rt);
    }
    if let Some(policy) = &route.rate_limit {
        let identity = caller.as_ref().and_then(Authenticated::rate_subject);
        limit_rate(policy, identity, &route.path, ctx, rt).await?;
    }
    let websocket = route.websocket && upgrade::is_websocket_handshake(req.method(), req.headers());
    if websocket
        && !upgrade::origin_allowed(
            req.headers().get(header::ORIGIN),
            host_with_port(&req),
            &route.allowed_origins,
        )
    {
        return Err(GatewayError::OriginNotAllowed);
    }
    crate::observe::audit::admit(rt, req.method())?;
    let path_and_query = upstream_target(route, action, &path, req.uri().query())?;
    let host_header = req
        .headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| authority_value(&req));
    let method = action
        .proxy_method
        .clone()
        .unwrap_or_else(|| req.method().clone());
    let plan = ForwardPlan {
        upstream: &rt.upstreams[action.upstream],
        path_and_query,
        method,
        forwarded: Forwarded {
            peer: ctx.peer,
            peer_trusted: ctx.peer_trusted,
            client_ip: ctx.client_ip,
            scheme: ctx.scheme,
            host: host_header.as_ref(),
            request_id: &ctx.request_id,
        },
        websocket,
        max_body_bytes: rt.config.limits.max_body_bytes,
    };
    req.headers_mut().remove(X_REQUEST_ID);
    let name = rt.upstreams[action.upstream].name.clone();
    let started = Instant::now();
    // A route that does not pass the body leaves it to `settle`, like a refusal.
    let body = if action.pass_request_body {
        let count = ctx.bytes_in.insert(ByteCount::default()).clone();
        body.take().map(|body| CountIn::new(body, count))
    } else {
        None
    };
    let result = proxy::forward(req, body, plan).await;
    ctx.upstream = Some((name, started.elapsed()));
    result
}

/// The route's rate-limit policy; the `RateLimit` headers go on the response either way.
async fn limit_rate(
    policy: &str,
    identity: Option<&std::sync::Arc<str>>,
    route: &str,
    ctx: &mut RequestCtx,
    rt: &Runtime,
) -> Result<(), GatewayError> {
    let subject = Subject {
        identity,
        client_ip: ctx.client_ip,
        route,
    };
    match rt.rate_limits.check(policy, &subject).await {
        Ok(Allowed { headers }) => {
            ctx.rate_headers = Some(headers);
            Ok(())
        }
        Err(Limited::Exceeded {
            retry_after_secs,
            headers,
        }) => {
            ctx.rate_headers = Some(headers);
            Err(GatewayError::RateLimited { retry_after_secs })
        }
        Err(Limited::Unavailable) => Err(GatewayError::RateLimiterUnavailable),
    }
}

/// Runs the route's credential kinds; `None` on a public route.
async fn authenticate(
    req: &Request<()>,
    route: &RouteConfig,
    path: &str,
    session_cookie: Option<&str>,
    conn: &ConnInfo,
    ctx: &RequestCtx,
    rt: &Runtime,
) -> Result<Option<Authenticated>, GatewayError> {
    if route.auth.is_empty() {
        return Ok(None);
    }
    let cert = conn.client_cert.as_deref();
    if let Some(decided) = mtls::authenticate(&route.auth, cert, rt.config.auth.mtls.as_ref()) {
        return decided.map(Some);
    }
    let uri = match req.uri().query() {
        Some(query) => Cow::Owned(format!("{path}?{query}")),
        None => Cow::Borrowed(path),
    };
    let attempt = Attempt {
        method: req.method(),
        uri: &uri,
        host: host_with_port(req),
        headers: req.headers(),
        client_ip: ctx.client_ip,
        request_id: &ctx.request_id,
        session: session_cookie.map(|value| SessionCookie {
            value,
            scheme: ctx.scheme,
        }),
    };
    rt.auth.authenticate(&route.auth, &attempt).await.map(Some)
}

/// Identity headers for the upstream, the auth service's `copy_headers`, and — unless
/// `forward_credentials` — no credentials.
fn pass_identity(headers: &mut http::HeaderMap, caller: &Authenticated, rt: &Runtime) {
    credentials::set_identity_headers(headers, &caller.identity);
    for (name, value) in caller.copy.iter().flat_map(|copy| copy.iter()) {
        headers.append(name.clone(), value.clone());
    }
    if !rt.config.auth.forward_credentials {
        credentials::remove_credentials(headers, &rt.auth.token_headers);
    }
}

/// The upstream request target: the path after strip/rewrite plus the untouched query.
fn upstream_target(
    route: &RouteConfig,
    action: &ProxyAction,
    path: &str,
    query: Option<&str>,
) -> Result<PathAndQuery, GatewayError> {
    let upstream = upstream_path(
        &route.path,
        action.strip_prefix,
        action.rewrite.as_deref(),
        path,
    );
    let target = match query {
        Some(query) => Cow::Owned(format!("{upstream}?{query}")),
        None => upstream,
    };
    PathAndQuery::try_from(target.as_ref())
        .map_err(|_| GatewayError::BadRequest("malformed request target"))
}

/// `Host` (HTTP/1) or `:authority` (HTTP/2), as sent, port included.
fn host_with_port<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

fn authority_value<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

/// The host without port, for route matching.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    host_with_port(req).map(strip_port)
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(ip, _)| ip);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// 308 from the cleartext listener to the same host and path on the TLS port.
fn https_redirect<B>(req: &Request<B>, port: u16) -> Response<Body> {
    let host = request_host(req).unwrap_or("localhost");
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let target = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    redirect(&location, 308)
}

fn redirect(location: &str, status: u16) -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn respond(status: u16, text: &str, content_type: &str) -> Response<Body> {
    let mut response = Response::new(body::full(text.to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Headers every response carries.
fn finish(ctx: &RequestCtx, rt: &Runtime, response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(X_REQUEST_ID, ctx.request_id.clone());
    if let Some(rate) = &ctx.rate_headers {
        response
            .headers_mut()
            .insert(RATELIMIT_POLICY, rate.policy.clone());
        response.headers_mut().insert(RATELIMIT, rate.state.clone());
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

/// What the access line needs from the request head; kept only when the line will be written
/// (`RUST_LOG` enables target `gatehouse::access` at INFO).
struct Seen {
    method: Method,
    /// A cheap clone (shared bytes): path and query.
    uri: http::Uri,
    user_agent: Option<HeaderValue>,
    version: Version,
}

impl Seen {
    fn of<B>(req: &Request<B>) -> Option<Self> {
        tracing::enabled!(target: "gatehouse::access", tracing::Level::INFO).then(|| Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            version: req.version(),
        })
    }
}

/// Counts the response body and, when it ends (or is dropped), adds the request and response
/// bytes to the route's counters and sends the access line — begun here, while the head's facts
/// are at hand — to the writer. Exactly once per request.
fn count_and_log(
    response: Response<Body>,
    seen: Option<Seen>,
    ctx: &RequestCtx,
    rt: &Runtime,
    conn: &ConnInfo,
    shared: &Arc<Shared>,
    route_label: Arc<str>,
) -> Response<Body> {
    let pending = seen.map(|seen| {
        AccessFields {
            request_id: ctx.request_id.as_bytes(),
            client_ip: ctx.client_ip,
            method: seen.method.as_str(),
            path: seen.uri.path(),
            query: seen.uri.query(),
            route: ctx.route.map(|i| rt.config.routes[i].path.as_str()),
            upstream: ctx.upstream.as_ref().map(|(name, _)| &**name),
            status: response.status().as_u16(),
            identity: ctx.identity.as_ref().map(|(subject, _)| &**subject),
            auth_method: ctx.identity.as_ref().map(|(_, method)| method.as_str()),
            duration: ctx.start.elapsed(),
            user_agent: seen.user_agent.as_ref().map(HeaderValue::as_bytes),
            http: http_version(seen.version),
            tls: conn.tls_version,
        }
        .begin(time::OffsetDateTime::now_utc())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        for (host, want) in [
            ("gw.example:8443", "gw.example"),
            ("gw.example", "gw.example"),
            ("[::1]:8443", "::1"),
            ("127.0.0.1:1", "127.0.0.1"),
        ] {
            assert_eq!(strip_port(host), want);
        }
    }

    #[test]
    fn plain_redirect_keeps_path_and_query() {
        let req = Request::builder()
            .uri("/api/x?y=1")
            .header("host", "gw.example:8080")
            .body(())
            .unwrap();
        let response = https_redirect(&req, 8443);
        assert_eq!(response.status(), 308);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://gw.example:8443/api/x?y=1"
        );
        assert_eq!(
            https_redirect(&req, 443).headers()[header::LOCATION],
            "https://gw.example/api/x?y=1"
        );
    }
}
