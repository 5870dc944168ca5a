//! Who may pass a proxy route, in the order the spine runs them: who the caller is
//! (authentication), what they may do (roles, write gate), the WebSocket Origin rule, and the
//! route's rate limit. Each step may refuse the request.

use std::borrow::Cow;

use http::{HeaderMap, Method, Request, header};

use super::context::{ConnInfo, RequestCtx};
use super::host::host_with_port;
use crate::auth::external::AuthRequest;
use crate::auth::roles::{self, Requirement};
use crate::auth::{Attempt, Authenticated, SessionCookie, credentials, mtls};
use crate::config::RouteConfig;
use crate::error::GatewayError;
use crate::proxy::upgrade;
use crate::ratelimit::{Allowed, RateRefusal, Subject};
use crate::runtime::Runtime;

/// Drops client-sent identity headers before anything reads them, and takes the session cookie
/// out: it is gatehouse's own, read here and never passed on (NGINX/oauth2-proxy too).
pub(super) fn strip_client_identity(headers: &mut HeaderMap, rt: &Runtime) -> Option<String> {
    credentials::strip_identity_headers(headers, &rt.auth.copy_headers);
    rt.auth.session.as_ref()?.take_cookie(headers)
}

/// Runs the route's credential kinds; `None` on a public route.
pub(super) async fn authenticate(
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
    // A verified client certificate decides first, on `mtls` routes.
    let cert = conn.client_cert.as_deref();
    if let Some(decided) = mtls::authenticate(&route.auth, cert, rt.config.auth.mtls.as_ref()) {
        return decided.map(Some);
    }
    let uri = match req.uri().query() {
        Some(query) => Cow::Owned(format!("{path}?{query}")),
        None => Cow::Borrowed(path),
    };
    let attempt = Attempt {
        request: AuthRequest {
            method: req.method(),
            uri: &uri,
            host: host_with_port(req),
            headers: req.headers(),
            client_ip: ctx.client_ip,
            request_id: &ctx.request_id,
        },
        session: session_cookie.map(|value| SessionCookie {
            value,
            scheme: ctx.scheme,
        }),
    };
    rt.auth.authenticate(&route.auth, &attempt).await.map(Some)
}

/// Roles and the write gate (403).
pub(super) fn authorize(
    method: &Method,
    route: &RouteConfig,
    caller: Option<&Authenticated>,
    ctx: &mut RequestCtx,
    rt: &Runtime,
) -> Result<(), GatewayError> {
    let identity = caller.map(|caller| &caller.identity);
    // Known before the check, so a 403 is logged and audited with who was refused.
    if let Some(identity) = identity {
        ctx.identity = Some((identity.subject.clone(), identity.method));
    }
    let need = Requirement {
        roles: &route.roles,
        write_roles: &route.write_roles,
        writes_enabled: rt.config.auth.write_actions,
    };
    roles::authorize(identity, method, &need)
}

/// A WebSocket handshake whose `Origin` is neither the gateway's own host nor in
/// `allowed_origins` is 403 (SPEC §4). It runs before the rate limit: a handshake refused for
/// its Origin is not the route's traffic, so it spends none of the route's budget and is never
/// answered 429 in place of 403.
pub(super) fn check_origin(req: &Request<()>, route: &RouteConfig) -> Result<(), GatewayError> {
    if !tunnels_websocket(req, route) {
        return Ok(());
    }
    let origin = req.headers().get(header::ORIGIN);
    if upgrade::origin_allowed(origin, host_with_port(req), &route.allowed_origins) {
        Ok(())
    } else {
        Err(GatewayError::OriginNotAllowed)
    }
}

/// A WebSocket handshake on a route that tunnels WebSockets; on any other route the `Upgrade`
/// is dropped like any hop-by-hop header and the request goes up as plain HTTP.
pub(super) fn tunnels_websocket(req: &Request<()>, route: &RouteConfig) -> bool {
    route.websocket && upgrade::is_websocket_handshake(req.method(), req.headers())
}

/// The route's rate-limit policy (429 / 503), keyed by identity, client IP or route. The
/// `RateLimit` headers go on the response either way.
pub(super) async fn limit_rate(
    route: &RouteConfig,
    caller: Option<&Authenticated>,
    ctx: &mut RequestCtx,
    rt: &Runtime,
) -> Result<(), GatewayError> {
    let Some(policy) = &route.rate_limit else {
        return Ok(());
    };
    let subject = Subject {
        identity: caller.and_then(Authenticated::rate_subject),
        client_ip: ctx.client_ip,
        route: &route.path,
    };
    match rt.rate_limits.check(policy, &subject).await {
        Ok(Allowed { headers }) => {
            ctx.rate_headers = Some(headers);
            Ok(())
        }
        Err(RateRefusal::Exceeded {
            retry_after_secs,
            headers,
        }) => {
            ctx.rate_headers = Some(headers);
            Err(GatewayError::RateLimited { retry_after_secs })
        }
        Err(RateRefusal::Unavailable) => Err(GatewayError::RateLimiterUnavailable),
    }
}
