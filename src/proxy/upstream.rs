//! [`Upstream`]: one named upstream — its targets, round robin with passive health, and each
//! target's pool of keep-alive connections ([`super::pool`]), shared by every request and every
//! runtime thread.
//!
//! Host names are resolved by the connector each time it opens a connection, so a name that does
//! not resolve at start is never fatal (requests get 502 naming the upstream) and a changed DNS
//! answer is picked up by the next new connection. A target that refuses a connection is skipped
//! for `fail_cooldown`.
//!
//! # Retries (SPEC §8.5)
//!
//! A request is retried once on another target only when no byte of it was written to the first:
//! the attempt failed while *connecting* (refused, unresolvable, connect or TLS handshake timed
//! out). [`pool::send`] reports exactly that as [`SendError::Connect`]: the connector's future
//! failed, so the request never met a connection. A pooled connection found closed before the
//! request was written is already retried inside the pool (hyper hands the unsent request back and
//! it goes to a new connection to the same target; if that connect fails, it is again a connect
//! failure). Every other
//! failure — reset, hang-up, a connection closed after the head went out — may have delivered the
//! request, so it is never sent again, whatever its method or body. Whether the body was polled
//! says nothing here: hyper never polls an empty body, so a DELETE whose head went out would look
//! unsent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version, header};
use hyper::body::Incoming;

use crate::config::UpstreamConfig;
use crate::config::collect::KeyError;
use crate::http::added::AddedHeaders;
use crate::http::body::{self, Body, BodyLimitExceeded, ClientBodyError, Replayable};
use crate::http::client::Roots;
use crate::http::wire;
use crate::proxy::exchange::{ExchangeError, UpstreamBody};
use crate::proxy::pool::{self, Connector, SendError, TargetPool};

/// Why an upstream call failed.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No connection could be made (refused, unresolvable, connect timeout) or it broke.
    Unavailable,
    /// No response headers within `response_timeout`.
    Timeout,
    /// The client's body exceeded `max_body_bytes` while streaming upstream.
    BodyTooLarge,
    /// The client's body broke its framing (or the client went away) while streaming upstream;
    /// the upstream request was aborted.
    ClientBody,
}

/// An upstream's response: from a lean exchange (a bodyless request), or from hyper's client
/// (a request with a body, a WebSocket handshake).
#[derive(Debug)]
pub(crate) enum UpstreamResponse {
    /// Read by [`crate::proxy::exchange`].
    Lean(Response<UpstreamBody<TargetPool>>),
    /// Read by hyper's client; a `101` carries the upgrade.
    Hyper(Response<Incoming>),
}

/// A failed attempt, and whether the request may go to another target.
struct Failed {
    error: UpstreamError,
    /// No byte of the request was written: the attempt failed while connecting.
    unsent: bool,
}

/// What to send: everything but the target, so a retry can rebuild it.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// Method sent upstream.
    pub(crate) method: Method,
    /// Path and query sent upstream.
    pub(crate) path_and_query: PathAndQuery,
    /// The client's headers sent upstream (hop-by-hop already removed).
    pub(crate) headers: HeaderMap,
    /// The gateway's headers, sent after `headers` (forwarded, identity).
    pub(crate) added: AddedHeaders,
}

struct Target {
    authority: Authority,
    /// The `Host` a request gets when the client sent none (HTTP/1.0).
    host: Option<HeaderValue>,
    /// `scheme://authority/`: what the connector opens.
    connect_to: Uri,
    /// Its keep-alive connections.
    pool: Arc<TargetPool>,
    /// Milliseconds since [`Upstream::epoch`] until which this target is skipped.
    down_until_ms: AtomicU64,
}

/// One upstream with its connection pool.
pub(crate) struct Upstream {
    /// The configured name, used in errors and metrics.
    pub(crate) name: Arc<str>,
    config: UpstreamConfig,
    targets: Box<[Target]>,
    next: AtomicUsize,
    epoch: Instant,
    connector: Connector,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("targets", &self.config.targets)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Builds the upstream and its (empty) pool. No DNS lookups or connections happen here.
    ///
    /// # Errors
    /// An unreadable `ca` file or a target that is not `host:port`, at a key relative to the
    /// `[[upstreams]]` entry (`targets[1]`, `ca`): only the caller knows the entry's index.
    pub(crate) fn new(config: &UpstreamConfig) -> Result<Self, KeyError> {
        let scheme = if config.https {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let targets = config
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let invalid =
                    || KeyError::new(format!("targets[{i}]"), format!("invalid target {t:?}"));
                let authority = t.parse::<Authority>().map_err(|_| invalid())?;
                let connect_to = Uri::builder()
                    .scheme(scheme.clone())
                    .authority(authority.clone())
                    .path_and_query("/")
                    .build()
                    .map_err(|_| invalid())?;
                Ok(Target {
                    host: default_host(&authority, &scheme),
                    authority,
                    connect_to,
                    pool: TargetPool::new(config.max_idle_per_target, config.pool_idle_timeout),
                    down_until_ms: AtomicU64::new(0),
                })
            })
            .collect::<Result<Box<[_]>, KeyError>>()?;
        let connector = connector(config)?;
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            config: config.clone(),
            targets,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            connector,
        })
    }

    /// The configuration this upstream was built from (a reload reuses an unchanged upstream,
    /// keeping its pool).
    pub(crate) fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Next target in round-robin order that is not cooling down and not `avoid`.
    fn pick(&self, avoid: Option<usize>) -> usize {
        let count = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        (0..count)
            .map(|i| (start + i) % count)
            .find(|&i| {
                Some(i) != avoid && self.targets[i].down_until_ms.load(Ordering::Relaxed) <= now
            })
            .or_else(|| {
                (0..count)
                    .map(|i| (start + i) % count)
                    .find(|&i| Some(i) != avoid)
            })
            .unwrap_or(0)
    }

    fn mark_down(&self, index: usize) {
        let until = self.now_ms().saturating_add(
            u64::try_from(self.config.fail_cooldown.as_millis()).unwrap_or(u64::MAX),
        );
        self.targets[index]
            .down_until_ms
            .store(until, Ordering::Relaxed);
    }

    /// The request as it goes on the wire: origin-form target, HTTP/1.1, and the target's
    /// authority as `Host` when the client sent none.
    fn request(&self, index: usize, outgoing: Outgoing, body: Body) -> Request<Body> {
        let mut request = Request::new(body);
        *request.method_mut() = outgoing.method;
        *request.uri_mut() = Uri::from(outgoing.path_and_query);
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = outgoing.headers;
        outgoing.added.append_to(request.headers_mut());
        if let Some(host) = &self.targets[index].host {
            request
                .headers_mut()
                .entry(header::HOST)
                .or_insert_with(|| host.clone());
        }
        request
    }

    /// Sends the request to a target, retrying once on another target if the first attempt could
    /// not connect (no byte of the request was written). `body`: `None` sends none. `started`:
    /// when the caller began sending (the clock read it times the upstream with).
    ///
    /// # Errors
    /// [`UpstreamError`] classified by predicate, never by message text.
    #[allow(clippy::manual_async_fn)] // on purpose: see the comment in the body
    pub(crate) fn send(
        &self,
        outgoing: Outgoing,
        body: Option<Body>,
        started: Instant,
    ) -> impl Future<Output = Result<UpstreamResponse, UpstreamError>> + Send + '_ {
        // An `async` block, not an `async fn`: one copy of `outgoing` in the future, not two
        // (`pipeline::handle` says why that matters).
        async move {
            if self.targets.len() == 1 {
                let sent = match body {
                    None => self.attempt_bodyless(0, &outgoing, started).await,
                    // Boxed: requests with a body are the rarer kind, and hyper's state is large.
                    Some(body) => Box::pin(self.attempt(0, outgoing, body)).await,
                };
                return sent.map_err(|failed| failed.error);
            }
            // Boxed: the retry's state stays out of the future of single-target upstreams, which
            // every request to one awaits (BENCHMARKS.md, "Future size").
            Box::pin(self.send_with_retry(outgoing, body, started)).await
        }
    }

    /// [`Self::send`] with more than one target: a replayable body and one retry elsewhere.
    async fn send_with_retry(
        &self,
        outgoing: Outgoing,
        body: Option<Body>,
        started: Instant,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let first = self.pick(None);
        let Some(body) = body else {
            return match self.attempt_bodyless(first, &outgoing, started).await {
                Err(failed) if failed.unsent => {
                    let second = self.pick(Some(first));
                    tracing::debug!(upstream = %self.name, "retrying on another target");
                    self.attempt_bodyless(second, &outgoing, Instant::now())
                        .await
                        .map_err(|failed| failed.error)
                }
                result => result.map_err(|failed| failed.error),
            };
        };
        let replayable = Replayable::new(body);
        let spare = replayable.retry();
        let result = self
            .attempt(first, outgoing.clone(), body::boxed(replayable))
            .await;
        let failed = match result {
            Ok(response) => return Ok(response),
            Err(failed) => failed,
        };
        // The spare is there whenever the attempt never connected (nothing polled the body); the
        // check stays as a second guard that a body is never sent twice.
        let again = spare.and_then(|spare| spare.retry());
        match (failed.unsent, again) {
            (true, Some(again)) => {
                let second = self.pick(Some(first));
                tracing::debug!(upstream = %self.name, "retrying on another target");
                self.attempt(second, outgoing, body::boxed(again))
                    .await
                    .map_err(|failed| failed.error)
            }
            _ => Err(failed.error),
        }
    }

    /// A request with no body, over a lean connection ([`pool::exchange`]), begun at `started`
    /// (its `response_timeout` runs from then).
    async fn attempt_bodyless(
        &self,
        index: usize,
        outgoing: &Outgoing,
        started: Instant,
    ) -> Result<UpstreamResponse, Failed> {
        let target = &self.targets[index];
        let build = |buf: &mut Vec<u8>| {
            wire::encode_request_head(
                buf,
                &outgoing.method,
                &outgoing.path_and_query,
                &outgoing.headers,
                outgoing.added.as_slice(),
                target.host.as_ref(),
            );
        };
        // The deadline from the time the caller read: one clock read a request fewer.
        let deadline = tokio::time::Instant::from_std(started) + self.config.response_timeout;
        let sent = tokio::time::timeout_at(
            deadline,
            pool::exchange(
                &target.pool,
                &self.connector,
                &target.connect_to,
                &outgoing.method,
                started,
                build,
            ),
        )
        .await;
        self.outcome(index, sent, UpstreamResponse::Lean)
    }

    /// A request with a body (or a WebSocket handshake), through hyper's client.
    async fn attempt(
        &self,
        index: usize,
        outgoing: Outgoing,
        body: Body,
    ) -> Result<UpstreamResponse, Failed> {
        let request = self.request(index, outgoing, body);
        let target = &self.targets[index];
        let sent = tokio::time::timeout(
            self.config.response_timeout,
            pool::send(&target.pool, &self.connector, &target.connect_to, request),
        )
        .await;
        self.outcome(index, sent, UpstreamResponse::Hyper)
    }

    /// What an attempt on target `index` came to: its response, or why it failed and whether
    /// it may be sent elsewhere.
    fn outcome<R>(
        &self,
        index: usize,
        sent: Result<Result<R, SendError>, tokio::time::error::Elapsed>,
        response: impl FnOnce(R) -> UpstreamResponse,
    ) -> Result<UpstreamResponse, Failed> {
        match sent {
            Err(_elapsed) => Err(Failed {
                error: UpstreamError::Timeout,
                unsent: false,
            }),
            Ok(Ok(answer)) => Ok(response(answer)),
            Ok(Err(SendError::Connect(error))) => Err(self.connect_failed(index, &*error)),
            Ok(Err(SendError::Request(error))) => Err(self.classify(index, &error)),
            Ok(Err(SendError::Exchange(error))) => Err(self.exchange_failed(index, &error)),
        }
    }

    /// No connection could be opened: nothing was sent, and the target cools down.
    fn connect_failed(&self, index: usize, error: &(dyn std::error::Error + 'static)) -> Failed {
        self.mark_down(index);
        tracing::warn!(upstream = %self.name, upstream_addr = %self.targets[index].authority, error = %error, "upstream request failed");
        Failed {
            error: UpstreamError::Unavailable,
            unsent: true,
        }
    }

    /// A bodyless request met a connection and failed: it may have left, so it is not resent.
    fn exchange_failed(&self, index: usize, error: &ExchangeError) -> Failed {
        tracing::warn!(upstream = %self.name, upstream_addr = %self.targets[index].authority, error = %error, "upstream request failed");
        Failed {
            error: UpstreamError::Unavailable,
            unsent: false,
        }
    }

    /// What a request that met a connection and failed means: whose fault (the client's body or
    /// the upstream); it may have left, so it is never sent again.
    fn classify(&self, index: usize, error: &hyper::Error) -> Failed {
        if BodyLimitExceeded::is_cause_of(error) {
            return Failed {
                error: UpstreamError::BodyTooLarge,
                unsent: false,
            };
        }
        if ClientBodyError::is_cause_of(error) {
            tracing::debug!(upstream = %self.name, "client body failed; upstream request aborted");
            return Failed {
                error: UpstreamError::ClientBody,
                unsent: false,
            };
        }
        // `upstream_addr`, not `target`: the JSON log already has a `target` key (the module).
        tracing::warn!(upstream = %self.name, upstream_addr = %self.targets[index].authority, error = %error, "upstream request failed");
        Failed {
            error: UpstreamError::Unavailable,
            unsent: false,
        }
    }
}

/// The `Host` hyper-util's client used to add: the host, and the port unless it is the scheme's
/// default.
fn default_host(authority: &Authority, scheme: &Scheme) -> Option<HeaderValue> {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    HeaderValue::from_str(&host).ok()
}

/// The connector: plain HTTP, or rustls with the configured CA (or the system roots).
fn connector(config: &UpstreamConfig) -> Result<Connector, KeyError> {
    let roots = match (&config.ca, config.https) {
        (Some(ca), _) => Roots::CaFile(ca),
        (None, true) => Roots::System,
        (None, false) => Roots::PlainOnly,
    };
    // The CA file when one is named, else the scheme that asked for the system roots.
    let key = if config.ca.is_some() { "ca" } else { "scheme" };
    crate::http::client::connector(
        &format!("upstream {}", config.name),
        roots,
        config.connect_timeout,
    )
    .map_err(|reason| KeyError::new(key, reason))
}
