//! Where a request goes: gatehouse's session endpoints, then the route table. Both may answer
//! here; only a proxy route goes on to the caller checks and the upstream.

use std::borrow::Cow;

use http::{Request, Response};
use hyper::body::Incoming;

use super::answer::{redirect, respond};
use super::context::RequestCtx;
use super::host::request_host;
use crate::auth::login;
use crate::config::{ProxyAction, RouteAction, RouteConfig};
use crate::error::GatewayError;
use crate::http::body::Body;
use crate::http::normalize::normalize_path;
use crate::router::{RouteMiss, slash_location};
use crate::runtime::Runtime;

/// A proxy route and its action: what the steps after routing read.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProxyRoute<'rt> {
    /// The matched route (auth, roles, Origin rule, rate limit).
    pub(super) route: &'rt RouteConfig,
    /// Where and how it forwards.
    pub(super) action: &'rt ProxyAction,
}

/// What routing decided.
pub(super) enum Routed<'rt> {
    /// A proxy route: the caller checks and forwarding follow.
    Proxy(ProxyRoute<'rt>),
    /// gatehouse answers itself: a trailing-slash redirect, a `redirect` or `respond` route.
    Answered(Response<Body>),
}

/// The normalised path every later step sees and the upstream receives.
pub(super) fn normalize(uri: &http::Uri) -> Result<Cow<'_, str>, GatewayError> {
    normalize_path(uri.path()).map_err(|_| GatewayError::BadRequest("malformed path"))
}

/// Answers the `[auth.session]` login/session/logout endpoints; `None` lets the request go on
/// to routing. They answer before the route table so no route can shadow them.
pub(super) async fn serve_session_endpoint(
    req: &Request<()>,
    path: &str,
    body: &mut Option<Incoming>,
    ctx: &mut RequestCtx,
    rt: &Runtime,
) -> Result<Option<Response<Body>>, GatewayError> {
    let conn = (ctx.scheme, ctx.client_ip);
    let Some(served) = login::serve(req, path, body, conn, &rt.auth).await? else {
        return Ok(None);
    };
    // A login is audited and logged with who logged in.
    ctx.identity = served.identity;
    Ok(Some(served.response))
}

/// Picks the route (404 / 405) and records it in `ctx`, so a later refusal is counted and
/// logged under it.
pub(super) fn find_route<'rt>(
    req: &Request<()>,
    path: &str,
    ctx: &mut RequestCtx,
    rt: &'rt Runtime,
) -> Result<Routed<'rt>, GatewayError> {
    let index = match rt.router.find(request_host(req), req.method(), path) {
        Ok(index) => index,
        Err(miss) => return route_miss(miss, req, path),
    };
    ctx.route = Some(index);
    let route = &rt.config.routes[index];
    Ok(match &route.action {
        RouteAction::Proxy(action) => Routed::Proxy(ProxyRoute { route, action }),
        RouteAction::Redirect { location, status } => Routed::Answered(redirect(location, *status)),
        RouteAction::Respond {
            status,
            body,
            content_type,
        } => Routed::Answered(respond(*status, body, content_type)),
    })
}

/// No route: 301 to the path with a trailing slash where that one has a route, else 404 / 405.
fn route_miss<'rt>(
    miss: RouteMiss,
    req: &Request<()>,
    path: &str,
) -> Result<Routed<'rt>, GatewayError> {
    match miss {
        RouteMiss::AddSlash => Ok(Routed::Answered(redirect(
            &slash_location(path, req.uri().query()),
            301,
        ))),
        RouteMiss::NotFound => Err(GatewayError::NoRoute(path.to_owned())),
        RouteMiss::MethodNotAllowed(allow) => Err(GatewayError::MethodNotAllowed {
            method: req.method().clone(),
            allow,
        }),
    }
}
