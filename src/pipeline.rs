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
mod context;
mod finish;
mod forward;
mod host;
mod route;
mod settle;

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::http::body::Body;
use crate::http::sanitize;
use crate::observe::audit;
use crate::runtime::{Runtime, Shared};
use admit::{authenticate, authorize, check_origin, limit_rate, strip_client_identity};
use finish::{Answered, Seen, count_and_log, finish};
use forward::{Admitted, forward};
use route::{Routed, find_route, normalize, serve_session_endpoint};
use settle::BodyFraming;

pub(crate) use context::{ConnInfo, RequestCtx};

/// Handles one request end to end. Never fails: errors become JSON responses.
#[allow(clippy::manual_async_fn)] // on purpose: see the comment in the body
pub(crate) fn handle<'a>(
    req: Request<Incoming>,
    conn: &'a ConnInfo,
    shared: &'a Arc<Shared>,
) -> impl Future<Output = Response<Body>> + Send + 'a {
    // An `async` block, not an `async fn`: the latter keeps a second copy of each argument in
    // the future (it moves them into locals), and this future is moved on every request
    // (hyper moves it into its slot; BENCHMARKS.md, "Future size").
    async move {
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
        let denial = result.as_ref().is_err_and(|e| e.auth_failure().is_some());
        let mut response = result.unwrap_or_else(|error| refuse(error, &ctx, &rt, shared));
        framing.settle(body, failed, &mut response).await;
        if method == Method::HEAD {
            answer::strip_head_body(&mut response);
        }
        finish(&ctx, &rt, &mut response);
        // Before the response goes back: a write's audit line is appended first (SPEC §7).
        let facts = audit::Facts {
            request_id: ctx.request_id_str(),
            identity: (ctx.identity.as_ref()).map(|(subject, how)| (&**subject, how.as_str())),
            client_ip: ctx.client_ip,
            // The same label the metrics use: two routes sharing a path stay apart.
            route: rt.route_labels.matched(ctx.route).map(|l| &**l),
            method: &method,
            uri: &uri,
            status: response.status(),
            denial,
        };
        audit::record(rt.audit.as_ref(), facts).await;
        let label = rt.route_labels.label(ctx.route);
        let upstream = ctx.upstream.as_ref().map(|(name, took)| (name, *took));
        // One clock read for the metrics and the access line.
        let took = ctx.start.elapsed();
        shared
            .metrics
            .traffic
            .record(label, &method, response.status().as_u16(), took, upstream);
        let answered = Answered {
            ctx: &ctx,
            took,
            route_label: label.clone(),
        };
        count_and_log(response, seen, answered, &rt, conn, shared)
    }
}

/// The spine: the steps of the module doc, in its order; each `?` may end the request with an
/// error response, each early `return` with gatehouse's own answer.
///
/// `body` is the client's body; only forwarding takes it, so whatever answers earlier leaves it
/// for [`BodyFraming::settle`].
#[allow(clippy::manual_async_fn)] // on purpose, as `handle`
fn route_and_forward<'a>(
    mut req: Request<()>,
    body: &'a mut Option<Incoming>,
    conn: &'a ConnInfo,
    ctx: &'a mut RequestCtx,
    rt: &'a Runtime,
) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + 'a {
    // An `async` block, not an `async fn`, for the reason `handle` gives.
    async move {
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
        audit::admit(rt.audit.as_ref(), req.method())?;
        let path = &path;
        forward(
            req,
            body,
            Admitted {
                proxy,
                path,
                caller,
            },
            ctx,
            conn,
            rt,
        )
        .await
    }
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
