//! The upstream request: its headers about the caller, its target and plan, and the call itself
//! with what it leaves in the request context (upstream, timing, body bytes).

use std::borrow::Cow;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use super::admit::tunnels_websocket;
use super::context::{ConnInfo, RequestCtx};
use super::host::upstream_host;
use super::route::ProxyRoute;
use crate::auth::{Authenticated, credentials};
use crate::error::GatewayError;
use crate::http::body::Body;
use crate::http::counted::{ByteCount, CountIn};
use crate::http::forwarded::Forwarded;
use crate::proxy::{self, ForwardPlan};
use crate::router::upstream_path;
use crate::runtime::Runtime;

/// A request the pipeline admitted for proxying: its route, its normalised path and who is
/// calling (`None` on a public route).
#[derive(Clone, Copy)]
pub(super) struct Admitted<'a> {
    pub(super) proxy: ProxyRoute<'a>,
    pub(super) path: &'a str,
    pub(super) caller: Option<&'a Authenticated>,
}

/// What the upstream hears about the caller: identity headers, the auth service's
/// `copy_headers`, and — unless `forward_credentials` — no credentials.
///
/// Set on the outgoing request, after the hop-by-hop headers are gone: a client that names
/// `x-auth-subject` in its `Connection` header must not make gatehouse drop it. The identity
/// and copied headers are added beside the client's (whose spellings of them were stripped on
/// arrival, `admit::strip_client_identity`).
fn set_upstream_headers(
    prepared: &mut proxy::Prepared<'_>,
    caller: Option<&Authenticated>,
    rt: &Runtime,
) {
    let Some(caller) = caller else { return };
    let added = prepared.added_mut();
    credentials::set_identity_headers(added, &caller.identity);
    for (name, value) in caller.copy.iter().flat_map(|copy| copy.iter()) {
        added.push(name.clone(), value.clone());
    }
    if !rt.config.auth.forward_credentials {
        credentials::remove_credentials(prepared.headers_mut(), &rt.auth.token_headers);
    }
}

/// Sends the request upstream (413 / 502 / 504) and notes in `ctx` which upstream answered and
/// how long it took, failed or not.
///
/// Not `async fn`: the request is prepared before the future is made, so the future holds the
/// outgoing request and not also the client's head, the route and the plan (BENCHMARKS.md,
/// "Future size").
pub(super) fn forward<'a>(
    req: Request<()>,
    body: &mut Option<Incoming>,
    admitted: Admitted<'_>,
    ctx: &'a mut RequestCtx,
    conn: &'a ConnInfo,
    rt: &'a Runtime,
) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + use<'a> {
    let prepared = prepare(req, body, admitted, ctx, conn, rt);
    async move {
        let prepared = prepared?;
        let name = prepared.upstream_name().clone();
        let started = Instant::now();
        let result = proxy::send(prepared, started).await;
        ctx.upstream = Some((name, started.elapsed()));
        result
    }
}

/// The upstream request, built from the client's.
fn prepare<'a>(
    req: Request<()>,
    body: &mut Option<Incoming>,
    admitted: Admitted<'_>,
    ctx: &mut RequestCtx,
    conn: &ConnInfo,
    rt: &'a Runtime,
) -> Result<proxy::Prepared<'a>, GatewayError> {
    let Admitted {
        proxy,
        path,
        caller,
    } = admitted;
    let target = upstream_target(proxy, path, req.uri())?;
    let host = upstream_host(&req);
    let body = take_body(body, proxy, &mut ctx.bytes_in);
    let plan = plan_forward(&req, proxy, target, host.as_ref(), ctx, conn, rt);
    let mut prepared = proxy::prepare(req, body, plan)?;
    set_upstream_headers(&mut prepared, caller, rt);
    Ok(prepared)
}

/// Everything `proxy::forward` needs besides the request: upstream, target, method, forwarded
/// headers, WebSocket tunnel, body limit.
fn plan_forward<'u, 'a>(
    req: &Request<()>,
    proxy: ProxyRoute<'_>,
    path_and_query: PathAndQuery,
    host: Option<&'a HeaderValue>,
    ctx: &'a RequestCtx,
    conn: &'a ConnInfo,
    rt: &'u Runtime,
) -> ForwardPlan<'u, 'a> {
    ForwardPlan {
        upstream: &rt.upstreams[proxy.action.upstream],
        path_and_query,
        method: (proxy.action.proxy_method.clone()).unwrap_or_else(|| req.method().clone()),
        forwarded: Forwarded {
            peer: &conn.peer_ip,
            peer_trusted: ctx.peer_trusted,
            client_ip: ctx.client_ip,
            scheme: ctx.scheme,
            host,
            request_id: ctx.request_id.header(),
        },
        websocket: tunnels_websocket(req, proxy.route),
        max_body_bytes: rt.config.limits.max_body_bytes,
    }
}

/// The client's body, counted as the proxy reads it. A route that does not pass the body leaves
/// it in place for `settle`, like a refusal does.
fn take_body(
    body: &mut Option<Incoming>,
    proxy: ProxyRoute<'_>,
    bytes_in: &mut Option<ByteCount>,
) -> Option<CountIn<Incoming>> {
    if !proxy.action.pass_request_body {
        return None;
    }
    let count = bytes_in.insert(ByteCount::default()).clone();
    body.take().map(|body| CountIn::new(body, count))
}

/// The upstream request target: the path after strip/rewrite plus the untouched query. When that
/// is the client's target as it came (a route that neither strips nor rewrites, a path already
/// normal), the client's is shared rather than copied and parsed again.
fn upstream_target(
    proxy: ProxyRoute<'_>,
    path: &str,
    client: &http::Uri,
) -> Result<PathAndQuery, GatewayError> {
    let query = client.query();
    let action = proxy.action;
    let upstream = upstream_path(
        &proxy.route.path,
        action.strip_prefix,
        action.rewrite.as_deref(),
        path,
    );
    let target = match query {
        Some(query) => Cow::Owned(format!("{upstream}?{query}")),
        None => upstream,
    };
    if let Some(sent) = client.path_and_query()
        && sent.as_str() == target
    {
        return Ok(sent.clone());
    }
    PathAndQuery::try_from(target.as_ref())
        .map_err(|_| GatewayError::BadRequest("malformed request target"))
}
