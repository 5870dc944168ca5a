//! Forwarding: turns the client's request into the upstream request (hop-by-hop headers removed,
//! forwarded headers set, body size enforced while streaming), sends it through the upstream's
//! pool, and streams the response back — or, for a WebSocket handshake, bridges the two upgraded
//! connections. Failures become 502/504 naming the upstream; a client body that breaks its framing
//! mid-stream becomes 400 and aborts the upstream request (SPEC §8.6).

pub(crate) mod exchange;
pub(crate) mod pool;
pub(crate) mod upgrade;
pub(crate) mod upstream;

use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::error::GatewayError;
use crate::http::added::AddedHeaders;
use crate::http::body::{self, Body, ClientBody, LimitedBody};
use crate::http::forwarded::{self, Forwarded};
use crate::http::sanitize::remove_hop_by_hop;
use upstream::{Outgoing, UpstreamResponse};
pub(crate) use upstream::{Upstream, UpstreamError};

/// Everything [`forward`] needs besides the request itself.
#[derive(Debug)]
pub(crate) struct ForwardPlan<'u, 'a> {
    /// Where to send it.
    pub(crate) upstream: &'u Upstream,
    /// Path (after strip/rewrite) and query sent upstream.
    pub(crate) path_and_query: PathAndQuery,
    /// Method sent upstream.
    pub(crate) method: Method,
    /// What the forwarded headers say.
    pub(crate) forwarded: Forwarded<'a>,
    /// The request is a WebSocket handshake on a route that allows it.
    pub(crate) websocket: bool,
    /// Request body limit.
    pub(crate) max_body_bytes: u64,
}

/// A request ready to go upstream: what [`prepare`] made of the client's request and its plan.
///
/// Preparing is synchronous and [`send`] takes only this, so the future the pipeline awaits for
/// every proxied request holds the outgoing request once and not the client's head beside it
/// (BENCHMARKS.md, "Future size").
pub(crate) struct Prepared<'a> {
    upstream: &'a Upstream,
    outgoing: Outgoing,
    /// `None`: no body goes upstream, and the request takes a lean connection
    /// ([`exchange`]).
    body: Option<Body>,
    /// The client connection's upgrade, for a WebSocket handshake.
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Prepared<'_> {
    /// The upstream's configured name.
    pub(crate) fn upstream_name(&self) -> &Arc<str> {
        &self.upstream.name
    }

    /// The client's headers as they go upstream: hop-by-hop headers gone, and so are the
    /// client's values of the forwarded headers the gateway sets (its own are in
    /// [`Self::added_mut`]).
    pub(crate) fn headers_mut(&mut self) -> &mut http::HeaderMap {
        &mut self.outgoing.headers
    }

    /// The headers the gateway adds after the client's (forwarded headers so far).
    pub(crate) fn added_mut(&mut self) -> &mut AddedHeaders {
        &mut self.outgoing.added
    }
}

/// How many headers the proxy adds to a request at most, commonly: `X-Forwarded-For`, `-Proto`,
/// `-Host`, `X-Real-IP`, `X-Request-Id`, and the caller's three identity headers.
const FORWARDING_HEADERS: usize = 8;

/// Turns `req` into the upstream request as planned, with the client's `body` (`None`: the route
/// does not pass it, and an empty body goes upstream; the pipeline hands it over wrapped in a
/// byte counter).
///
/// # Errors
/// 413 when the declared length is already over the limit.
pub(crate) fn prepare<'u, B>(
    mut req: Request<()>,
    body: Option<B>,
    plan: ForwardPlan<'u, '_>,
) -> Result<Prepared<'u>, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<body::BoxError>,
{
    check_declared_length(req.headers(), plan.max_body_bytes)?;
    let client_upgrade = plan.websocket.then(|| hyper::upgrade::on(&mut req));
    let (parts, ()) = req.into_parts();
    let mut headers = parts.headers;
    remove_hop_by_hop(&mut headers);
    if plan.websocket {
        upgrade::restore_upgrade_headers(&mut headers);
    }
    // The gateway's headers go beside the map, not into it (`AddedHeaders`).
    let mut added = AddedHeaders::with_capacity(FORWARDING_HEADERS);
    forwarded::apply(&mut headers, &mut added, &plan.forwarded);
    if parts.version == http::Version::HTTP_2
        && !headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    let body = match body {
        Some(client_body) if plan.websocket || !client_body.is_end_stream() => Some(body::boxed(
            LimitedBody::new(ClientBody::new(client_body), plan.max_body_bytes),
        )),
        // No body, or one that is already over (`Content-Length: 0`, an h2 HEADERS frame that
        // ended the stream): none goes upstream.
        _ => {
            headers.remove(header::CONTENT_LENGTH);
            if matches!(plan.method, Method::POST | Method::PUT | Method::PATCH) {
                // Some servers answer 411 to a bodyless POST without a length.
                headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("0"));
            }
            // A WebSocket handshake and CONNECT need hyper's client, which hands over the
            // upgraded connection.
            (plan.websocket || plan.method == Method::CONNECT).then(body::empty)
        }
    };
    Ok(Prepared {
        upstream: plan.upstream,
        outgoing: Outgoing {
            method: plan.method,
            path_and_query: plan.path_and_query,
            headers,
            added,
        },
        body,
        client_upgrade,
    })
}

/// Sends a prepared request upstream and returns the response to give the client. `started`:
/// now, as the caller read it to time the upstream (`response_timeout` runs from it).
///
/// # Errors
/// 413 for a body that grows past the limit, 400 for a client body that breaks its framing, 502
/// when the upstream cannot be reached, 504 when it is too slow.
pub(crate) async fn send(
    prepared: Prepared<'_>,
    started: std::time::Instant,
) -> Result<Response<Body>, GatewayError> {
    let Prepared {
        upstream,
        outgoing,
        body,
        client_upgrade,
    } = prepared;
    let name = &upstream.name;
    let response = upstream
        .send(outgoing, body, started)
        .await
        .map_err(|error| match error {
            UpstreamError::Unavailable => GatewayError::UpstreamUnavailable(name.clone()),
            UpstreamError::Timeout => GatewayError::UpstreamTimeout(name.clone()),
            UpstreamError::BodyTooLarge => GatewayError::BodyTooLarge,
            UpstreamError::ClientBody => GatewayError::MalformedBody,
        })?;
    let mut response = match response {
        UpstreamResponse::Lean(response) => response.map(body::boxed),
        UpstreamResponse::Hyper(response)
            if response.status() == StatusCode::SWITCHING_PROTOCOLS =>
        {
            return switch_protocols(response, client_upgrade, name);
        }
        UpstreamResponse::Hyper(response) => response.map(body::boxed),
    };
    remove_hop_by_hop(response.headers_mut());
    Ok(response)
}

/// 413 before any byte is read when the declared length is already too large.
fn check_declared_length(headers: &HeaderMap, max: u64) -> Result<(), GatewayError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > max => Err(GatewayError::BodyTooLarge),
        _ => Ok(()),
    }
}

/// Hands the client the upstream's 101 and joins the two upgraded connections.
///
/// # Errors
/// 502 when the upstream switched protocols on a request that asked for no upgrade we allow:
/// there is no client connection to join it to. Like every refusal it goes back to the pipeline,
/// which counts it and answers with the request's id.
fn switch_protocols(
    mut response: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    name: &Arc<str>,
) -> Result<Response<Body>, GatewayError> {
    let Some(client_upgrade) = client_upgrade else {
        return Err(GatewayError::UpstreamUnavailable(name.clone()));
    };
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    upgrade::spawn_tunnel(client_upgrade, upstream_upgrade, name.clone());
    Ok(response.map(|_| body::empty()))
}
