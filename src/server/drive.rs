//! Drives one connection's HTTP, once it is accepted and past TLS, until it ends.
//!
//! - **HTTP/2** (by ALPN, or by its preface on a connection without ALPN) goes to hyper-util's
//!   auto builder; the connection is closed gracefully (GOAWAY) once no stream has been open for
//!   `idle_timeout` or the drain begins.
//! - **HTTP/1.1** goes to hyper's HTTP/1 connection, and an idle keep-alive connection *parks*:
//!   after [`PARK_AFTER`] with no open request, hyper is asked to let go of the connection (its
//!   read and write buffers, 16 KiB, and its dispatcher are freed), and the socket waits, with
//!   only its TLS state, for the next request's first bytes; a new hyper connection then serves
//!   it. NGINX does the same with its header buffers between keep-alive requests. Parking happens
//!   only at a message boundary hyper itself confirms ([`park`]); anything else closes the
//!   connection, as hyper would have.
//! - A connection waits for its first request holding no HTTP buffer either, bounded by
//!   `header_read_timeout`; a keep-alive connection waits for its next one up to `idle_timeout`.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::gated::Gated;
use crate::http::body::BoxError;
use crate::http::idle::Activity;
use crate::http::park::{ParkIo, ParkSignals};
use crate::observe::metrics::Metrics;

/// How long an HTTP/1 keep-alive connection stays idle before it releases hyper's buffers. Short
/// enough that a client that paused holds little memory, long enough that back-to-back requests
/// keep their hyper connection.
pub(super) const PARK_AFTER: Duration = Duration::from_millis(250);

/// How long closing a connection's socket may take (a TLS close_notify to a peer that does not
/// read).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The HTTP/2 connection preface; a client without ALPN that starts with it speaks HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The signals every connection follows while the gateway shuts down.
#[derive(Clone)]
pub(super) struct Lifecycle {
    /// Turns true once `drain_delay` is over: stop accepting, close connections gracefully.
    pub(super) stop: watch::Receiver<bool>,
    /// Turns true (or its sender goes) once `shutdown_grace` is over: whatever is still open,
    /// WebSocket tunnels included, is dropped.
    pub(super) kill: watch::Receiver<bool>,
}

/// Resolves once the flag is set (or its sender is gone).
pub(super) async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

/// Logs how a connection ended, if it ended with an error.
pub(super) fn report<E: Into<BoxError>>(result: Result<(), E>) {
    if let Err(error) = result {
        let error: BoxError = error.into();
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// The hyper connection builders, configured once per connection from the current limits.
pub(super) struct Builders {
    /// HTTP/1.1 (parking keep-alive connections).
    pub(super) http1: http1::Builder,
    /// HTTP/2, and whatever a client without ALPN speaks.
    pub(super) auto: auto::Builder<TokioExecutor>,
}

/// What driving one connection needs besides its IO and service.
pub(super) struct Driver<'a> {
    /// The configured hyper builders.
    pub(super) builders: &'a Builders,
    /// The connection's open requests (the service opens and ends them).
    pub(super) activity: Arc<Activity>,
    /// Shared with the service (which reports each dispatched request) and the IO.
    pub(super) signals: Arc<ParkSignals>,
    /// `limits.idle_timeout` (zero: never).
    pub(super) idle_timeout: Duration,
    /// `limits.header_read_timeout`: how long a new connection may wait for its first bytes.
    pub(super) header_read_timeout: Duration,
    /// Drain and kill signals.
    pub(super) lifecycle: Lifecycle,
    /// Where parked connections are counted.
    pub(super) metrics: &'a Metrics,
    /// Counts and logs a request head that ended the connection with this status: refused by
    /// hyper, or cut off at `header_read_timeout` ([`super::rejected`]).
    pub(super) on_refused_head: &'a (dyn Fn(u16) + Send + Sync),
}

/// The client's byte stream (TLS or plain TCP), as hyper's builders take it.
pub(super) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientIo for T {}

/// The per-connection request service: what hyper's HTTP/1 and auto builders require, and
/// `Unpin` so a parked connection can hand it back.
pub(super) trait ConnService<B>:
    Service<Request<Incoming>, Response = Response<B>, Error = Infallible, Future: Send + 'static>
    + Unpin
    + Send
    + 'static
{
}
impl<S, B> ConnService<B> for S where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Unpin
        + Send
        + 'static
{
}

/// A response body hyper can send.
pub(super) trait ResponseBody:
    http_body::Body<Data = bytes::Bytes, Error = BoxError> + Send + 'static
{
}
impl<B: http_body::Body<Data = bytes::Bytes, Error = BoxError> + Send + 'static> ResponseBody
    for B
{
}

/// Serves `io` with `service` until the connection ends. `h2_by_alpn`: ALPN chose HTTP/2.
pub(super) async fn serve<T, S, B>(io: T, service: S, h2_by_alpn: bool, mut driver: Driver<'_>)
where
    T: ClientIo,
    S: ConnService<B>,
    B: ResponseBody,
{
    let mut io = ParkIo::new(io, driver.signals.clone());
    if !h2_by_alpn {
        let first_within = Some(driver.header_read_timeout);
        if !wake(&mut io, &mut driver, first_within).await {
            return;
        }
        if !may_be_h2(io.prefix()) {
            return serve_http1(io, service, driver).await;
        }
    }
    serve_auto(io, service, driver).await;
}

/// True when `first` may be the start of the HTTP/2 preface (no HTTP/1 method is `PRI`).
fn may_be_h2(first: &[u8]) -> bool {
    let n = first.len().min(H2_PREFACE.len());
    H2_PREFACE.starts_with(&first[..n])
}

/// HTTP/2 (or no ALPN and the preface): hyper-util's auto builder until the connection ends, or
/// no stream has been open for `idle_timeout`, or the drain begins.
async fn serve_auto<T, S, B>(io: ParkIo<T>, service: S, mut driver: Driver<'_>)
where
    T: ClientIo,
    S: ConnService<B>,
    B: ResponseBody,
{
    // Boxed once: the connection lives as long as the task, and an unboxed one would be moved
    // (and kept twice) in this future's states.
    let mut connection = Box::pin(
        driver
            .builders
            .auto
            .serve_connection_with_upgrades(TokioIo::new(io), BoxedStreams(service)),
    );
    let lifecycle = &mut driver.lifecycle;
    let outside = Gated::new(outside(&driver.activity, driver.idle_timeout, lifecycle));
    let reason = tokio::select! {
        result = connection.as_mut() => return report(result),
        signal = outside => match signal {
            Outside::Idle => "idle",
            Outside::Drain => "draining",
            Outside::Kill => return,
        },
    };
    close_gracefully(connection, |c| c.graceful_shutdown(), reason, lifecycle).await;
}

/// Hands hyper each request's future boxed. On HTTP/2 hyper spawns a task per stream and moves
/// the future into it at its full size, some 4 KiB, copied again into the task's cell; a box
/// moves 8 bytes. HTTP/1 keeps its future inline: hyper holds one request at a time there, and
/// the allocation costs more than the copy (BENCHMARKS.md, "Future size").
struct BoxedStreams<S>(S);

impl<S, B> Service<Request<Incoming>> for BoxedStreams<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Pin<Box<S::Future>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        Box::pin(self.0.call(request))
    }
}

/// How a stretch of HTTP/1 requests on one hyper connection ended.
enum Burst {
    /// hyper ended the connection (or the grace period did): nothing more to do.
    Ended,
    /// Close gracefully, for this reason.
    Close(&'static str),
    /// No request open for [`PARK_AFTER`], and hyper read nothing since its last request head.
    Idle,
}

/// HTTP/1.1: serves requests with a hyper connection, parks it whenever it idles, and serves the
/// next request with a new one.
async fn serve_http1<T, S, B>(mut io: ParkIo<T>, mut service: S, mut driver: Driver<'_>)
where
    T: ClientIo,
    S: ConnService<B>,
    B: ResponseBody,
{
    loop {
        let connection = driver
            .builders
            .http1
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        // Boxed: freed as a whole when the connection parks.
        let mut connection = Box::pin(connection);
        match serve_until_idle(connection.as_mut(), &mut driver).await {
            Burst::Ended => return,
            Burst::Close(reason) => {
                let lifecycle = &mut driver.lifecycle;
                return close_gracefully(connection, |c| c.graceful_shutdown(), reason, lifecycle)
                    .await;
            }
            Burst::Idle => {}
        }
        // Boxed: parking is brief, and inline its state would enlarge this future, which lives
        // as long as the connection.
        let Some((parked, kept)) = Box::pin(park(connection, &mut driver)).await else {
            return;
        };
        (io, service) = (parked, kept);
        let counted = ParkedGauge::new(driver.metrics);
        if !wake(&mut io, &mut driver, None).await {
            return;
        }
        drop(counted);
    }
}

/// Runs `connection` until it ends, the drain begins, or it idles: for [`PARK_AFTER`] when it
/// may park, else for `idle_timeout`.
async fn serve_until_idle<F, E>(mut connection: Pin<&mut F>, driver: &mut Driver<'_>) -> Burst
where
    F: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    let idle_timeout = driver.idle_timeout;
    let parks = idle_timeout.is_zero() || PARK_AFTER < idle_timeout;
    let mut wait = if parks { PARK_AFTER } else { idle_timeout };
    let lifecycle = &mut driver.lifecycle;
    loop {
        let outside = Gated::new(outside(&driver.activity, wait, lifecycle));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    let error: BoxError = error.into();
                    if let Some(status) = super::rejected::logged_status(&error) {
                        (driver.on_refused_head)(status);
                    }
                    report::<BoxError>(Err(error));
                }
                return Burst::Ended;
            }
            signal = outside => match signal {
                Outside::Drain => return Burst::Close("draining"),
                Outside::Kill => return Burst::Ended,
                Outside::Idle if wait == idle_timeout => return Burst::Close("idle"),
                Outside::Idle => {
                    if driver.signals.unparsed() == 0 {
                        return Burst::Idle;
                    }
                    // hyper holds part of a request (a body that came in its own read): no
                    // parking on this stretch; the idle deadline still applies.
                    wait = idle_timeout;
                }
            },
        }
    }
}

/// What ends a connection from outside its HTTP exchange.
enum Outside {
    /// No request open for the idle period waited for.
    Idle,
    /// The drain began: close gracefully.
    Drain,
    /// The grace period is over: drop the connection.
    Kill,
}

/// Waits for the first outside signal: `idle` with no request open, the drain, or the kill.
/// Polled behind a [`Gated`], so only when one of them fired.
async fn outside(activity: &Activity, idle: Duration, lifecycle: &mut Lifecycle) -> Outside {
    tokio::select! {
        () = activity.idle(idle) => Outside::Idle,
        () = stopped(&mut lifecycle.stop) => Outside::Drain,
        () = stopped(&mut lifecycle.kill) => Outside::Kill,
    }
}

type Http1Connection<T, S> = http1::UpgradeableConnection<TokioIo<ParkIo<T>>, S>;

/// Counts a connection in `gatehouse_parked_connections` while it lives.
struct ParkedGauge<'a>(&'a Metrics);

impl<'a> ParkedGauge<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.parked(1);
        Self(metrics)
    }
}

impl Drop for ParkedGauge<'_> {
    fn drop(&mut self) {
        self.0.parked(-1);
    }
}

/// Asks hyper to let go of an idle connection. hyper closes an idle connection at once (its
/// shutdown is skipped, as parking), so the connection is taken back only when hyper finished
/// in the first poll, read nothing more, dispatched nothing, and left no byte unparsed. If it
/// was still busy, keep-alive is now off and it closes when done; the connection ends.
async fn park<T, S, B>(
    mut connection: Pin<Box<Http1Connection<T, S>>>,
    driver: &mut Driver<'_>,
) -> Option<(ParkIo<T>, S)>
where
    T: ClientIo,
    S: ConnService<B>,
    B: ResponseBody,
{
    let signals = driver.signals.clone();
    let dispatched = signals.dispatched();
    signals.set_parking(true);
    connection.as_mut().graceful_shutdown();
    let first = poll_fn(|cx| Poll::Ready(connection.as_mut().poll(cx))).await;
    signals.set_parking(false);
    let at_boundary = signals.unparsed() == 0 && signals.dispatched() == dispatched;
    let kill = &mut driver.lifecycle.kill;
    match first {
        Poll::Pending => {
            tokio::select! {
                result = connection => report(result),
                () = stopped(kill) => {}
            }
            None
        }
        Poll::Ready(result) => {
            let clean = at_boundary && result.is_ok();
            report(result);
            let parts = Pin::into_inner(connection).into_parts()?;
            let mut io = parts.io.into_inner();
            if clean && parts.read_buf.is_empty() {
                return Some((io, parts.service));
            }
            // Not a message boundary hyper confirmed (or part of a pipelined request it had
            // read): close, as hyper would have.
            close(&mut io, kill).await;
            None
        }
    }
}

/// Waits, holding no HTTP buffer, for the next request's first bytes: false when the connection
/// ended instead (the peer closed it, or it idled, or the drain began, and it was closed).
/// `first_within`: a new connection's bound (`header_read_timeout`); later waits are bounded by
/// `idle_timeout`.
async fn wake<T>(
    io: &mut ParkIo<T>,
    driver: &mut Driver<'_>,
    first_within: Option<Duration>,
) -> bool
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let lifecycle = &mut driver.lifecycle;
    let first_deadline = async {
        match first_within {
            Some(within) if !within.is_zero() => tokio::time::sleep(within).await,
            _ => std::future::pending().await,
        }
    };
    let reason = tokio::select! {
        woke = poll_fn(|cx| io.poll_wake(cx)) => return matches!(woke, Ok(true)),
        () = first_deadline => "no request within header_read_timeout",
        () = driver.activity.idle(driver.idle_timeout) => "idle",
        () = stopped(&mut lifecycle.stop) => "draining",
        () = stopped(&mut lifecycle.kill) => return false,
    };
    tracing::debug!(reason, "closing a waiting connection");
    close(io, &mut lifecycle.kill).await;
    false
}

/// Shuts the socket down (TLS close_notify, then FIN), bounded by [`CLOSE_WAIT`] and the grace
/// period.
async fn close<T: AsyncWrite + Unpin>(io: &mut T, kill: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::timeout(CLOSE_WAIT, io.shutdown()) => {}
        () = stopped(kill) => {}
    }
}

/// Closes gracefully (HTTP/2 GOAWAY, HTTP/1 close after the current response) and waits for the
/// connection to finish, or drops it once the grace period is over.
async fn close_gracefully<F, E>(
    mut connection: Pin<Box<F>>,
    begin: impl FnOnce(Pin<&mut F>),
    reason: &'static str,
    lifecycle: &mut Lifecycle,
) where
    F: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    tracing::debug!(reason, "closing connection gracefully");
    begin(connection.as_mut());
    tokio::select! {
        result = connection => report(result),
        () = stopped(&mut lifecycle.kill) => tracing::debug!("shutdown_grace over: connection dropped"),
    }
}

#[cfg(test)]
mod tests {
    use super::may_be_h2;

    #[test]
    fn only_a_start_of_the_preface_counts_as_http2() {
        assert!(may_be_h2(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"));
        assert!(
            may_be_h2(b"PR"),
            "too short to tell: the auto builder decides"
        );
        assert!(!may_be_h2(b"POST / HTTP/1.1\r\n"));
        assert!(!may_be_h2(b"GET / HTTP/1.1\r\n"));
        assert!(!may_be_h2(b"PRIX"));
    }
}
