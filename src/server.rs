//! Listeners and connections: [`Gateway::start`] loads the config, builds the first runtime,
//! binds every listener (port 0 allowed) and serves until [`Gateway::shutdown`]; then it drains
//! as SPEC §6 says — `/readyz` 503, keep accepting for `drain_delay`, close keep-alive
//! connections gracefully (`Connection: close`, HTTP/2 GOAWAY), let in-flight requests finish
//! within `shutdown_grace`, then drop whatever is left, WebSocket tunnels included (§8.7).
//!
//! Each accepted connection takes a `max_connections` permit, held by its socket's IO wrapper
//! until the socket is dropped (so a WebSocket tunnel keeps it), completes its TLS handshake
//! with the runtime's *current* `ServerConfig` (so a reload changes certificates for new
//! handshakes only), and is served by hyper-util's auto builder (HTTP/1.1 or h2 by ALPN).
//! Idle is counted in requests, not bytes ([`crate::http::idle`]): a connection with no open
//! request for `idle_timeout` is closed gracefully, keep-alive PINGs notwithstanding. On h2,
//! [`crate::http::h2_trailers`] makes a pseudo-header in request trailers a stream error.

mod drive;
mod gated;
mod rejected;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use http::Response;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::{Limits, PlainMode};
use crate::http::body::Body;
use crate::http::forwarded::PeerIp;
use crate::http::h2_trailers::TrailerGuard;
use crate::http::head_scan::ScanIo;
use crate::http::idle::{Activity, IdleTimeout, RequestGuard};
use crate::http::park::ParkSignals;
use crate::http::sanitize::SmugglingShape;
use crate::pipeline::{self, ConnInfo};
use crate::proxy::upgrade::TunnelScope;
use crate::reload::{ReloadHandle, ReloadOutcome, Reloader};
use crate::runtime::{Runtime, Shared};
use drive::{Builders, Driver, Lifecycle, stopped};

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    https_addr: SocketAddr,
    plain_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    reload: ReloadHandle,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    /// Loads the config at `config_path`, builds the runtime (generating a self-signed certificate
    /// if needed), binds every listener and starts serving. Returns once all listeners accept.
    ///
    /// # Errors
    /// Invalid configuration (every problem listed), unusable certificates, or a bind failure.
    pub async fn start(config_path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let path = config_path.as_ref().to_owned();
        let reloader = Reloader::watch_config(&path);
        let runtime = tokio::task::spawn_blocking(move || -> anyhow::Result<Runtime> {
            let config = crate::config::load(&path)?;
            Runtime::build(config, None).map_err(anyhow::Error::msg)
        })
        .await
        .context("runtime build task failed")??;
        let config = runtime.config.clone();
        let https = bind(config.server.listen, "server.listen").await?;
        let plain = match config.server.plain_listen {
            Some(addr) => Some(bind(addr, "server.plain_listen").await?),
            None => None,
        };
        let admin = bind(config.server.admin_listen, "server.admin_listen").await?;
        let https_addr = https.local_addr()?;
        let plain_addr = plain.as_ref().map(TcpListener::local_addr).transpose()?;
        let admin_addr = admin.local_addr()?;
        let shared = Arc::new(Shared::new(runtime));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let redirect_port =
            (config.server.plain_mode == PlainMode::Redirect).then_some(https_addr.port());
        let listeners = Listeners {
            https,
            plain,
            admin,
            redirect_port,
        };
        let reload = reloader.handle(&shared);
        let reload_task = tokio::spawn(reloader.run(shared.clone()));
        let task = tokio::spawn(serve(
            listeners,
            shared.clone(),
            reload.clone(),
            shutdown_rx,
            reload_task,
        ));
        tracing::info!(https = %https_addr, plain = plain_addr.map(tracing::field::display), admin = %admin_addr, "gatehouse listening");
        Ok(Self {
            https_addr,
            plain_addr,
            admin_addr: Some(admin_addr),
            shared,
            reload,
            shutdown,
            task,
        })
    }

    /// The TLS listener's address.
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The cleartext listener's address, if configured.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The shared state (current runtime, drain flag).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Reloads now (as `POST /reload` does) and returns the outcome.
    pub async fn reload(&self) -> ReloadOutcome {
        self.reload.reload().await
    }

    /// A handle that triggers reloads (SIGHUP).
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
    }

    /// Begins the drain, as SIGTERM does.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until the gateway has stopped.
    ///
    /// # Errors
    /// The serving task failed or panicked.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("gateway task panicked")?
    }
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}

struct Listeners {
    https: TcpListener,
    plain: Option<TcpListener>,
    admin: TcpListener,
    /// `Some(tls_port)` when the cleartext listener redirects.
    redirect_port: Option<u16>,
}

/// Serves until shutdown is requested, then drains.
async fn serve(
    listeners: Listeners,
    shared: Arc<Shared>,
    reload: ReloadHandle,
    mut shutdown: watch::Receiver<bool>,
    reload_task: JoinHandle<()>,
) -> anyhow::Result<()> {
    let limits = shared.runtime.load().config.limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stop_rx) = watch::channel(false);
    let (kill, kill_rx) = watch::channel(false);
    let lifecycle = Lifecycle {
        stop: stop_rx,
        kill: kill_rx,
    };
    let mut acceptors = vec![tokio::spawn(accept_loop(
        listeners.https,
        Acceptor {
            tls: true,
            redirect_to_port: None,
        },
        shared.clone(),
        permits.clone(),
        lifecycle.clone(),
    ))];
    if let Some(plain) = listeners.plain {
        let kind = Acceptor {
            tls: false,
            redirect_to_port: listeners.redirect_port,
        };
        acceptors.push(tokio::spawn(accept_loop(
            plain,
            kind,
            shared.clone(),
            permits.clone(),
            lifecycle.clone(),
        )));
    }
    drop(lifecycle);
    let purger = tokio::spawn(purge_rate_limits(shared.clone()));
    let admin = tokio::spawn(crate::admin::serve(listeners.admin, shared.clone(), reload));
    stopped(&mut shutdown).await;
    drain(&shared, &limits, stop, acceptors, &permits).await;
    let _ = kill.send(true);
    admin.abort();
    reload_task.abort();
    purger.abort();
    flush_access_log(shared).await;
    Ok(())
}

/// How long shutdown waits for queued access-log lines to reach stdout.
const ACCESS_LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// Writes out the access lines queued so far (bounded by [`ACCESS_LOG_FLUSH`]), so the process
/// does not exit with the last requests' lines still in memory.
async fn flush_access_log(shared: Arc<Shared>) {
    let flushed =
        tokio::task::spawn_blocking(move || shared.access_log.flush(ACCESS_LOG_FLUSH)).await;
    if !matches!(flushed, Ok(true)) {
        tracing::warn!("access log not flushed within its bound; its last lines may be lost");
    }
}

/// A duration as whole milliseconds, for log fields (a number, not Debug text).
fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// SPEC §6: readyz 503, accept for `drain_delay`, stop accepting, graceful close bounded by
/// `shutdown_grace`. Every connection, a WebSocket tunnel included, holds a permit until its
/// socket is dropped, so holding all permits again means everything has closed.
async fn drain(
    shared: &Shared,
    limits: &Limits,
    stop: watch::Sender<bool>,
    acceptors: Vec<JoinHandle<()>>,
    permits: &Semaphore,
) {
    shared.start_draining();
    tracing::info!(
        drain_delay_ms = millis(limits.drain_delay),
        "draining: /readyz now 503"
    );
    tokio::time::sleep(limits.drain_delay).await;
    let _ = stop.send(true);
    for acceptor in acceptors {
        let _ = acceptor.await;
    }
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(all)).await {
        Ok(_) => tracing::info!("all connections closed; stopped"),
        Err(_) => {
            tracing::warn!(
                shutdown_grace_ms = millis(limits.shutdown_grace),
                "shutdown_grace elapsed; closing remaining connections"
            )
        }
    }
}

#[derive(Clone, Copy)]
struct Acceptor {
    tls: bool,
    redirect_to_port: Option<u16>,
}

/// Held by a connection's IO until the socket is dropped (after a WebSocket tunnel, if any).
struct Lease {
    _permit: OwnedSemaphorePermit,
    _open: OpenConnection,
}

async fn accept_loop(
    listener: TcpListener,
    kind: Acceptor,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    lifecycle: Lifecycle,
) {
    let mut stop = lifecycle.stop.clone();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stopped(&mut stop) => return,
        };
        let (stream, peer) = tokio::select! {
            pair = crate::listen::accept(&listener, if kind.tls { "https" } else { "plain" }) => pair,
            () = stopped(&mut stop) => return,
        };
        shared.metrics.connections(1);
        let lease = Lease {
            _permit: permit,
            _open: OpenConnection(shared.clone()),
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            kind,
            shared.clone(),
            lease,
            lifecycle.clone(),
        ));
    }
}

/// How often stale rate-limit keys are dropped (bounded memory between bursts of new clients).
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

async fn purge_rate_limits(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        let runtime = shared.runtime.load_full();
        // purge() walks every key: keep it off the async worker threads.
        let _ = tokio::task::spawn_blocking(move || runtime.rate_limits.purge()).await;
    }
}

/// Decrements `gatehouse_active_connections` when the connection's socket is dropped, however it
/// ends.
struct OpenConnection(Arc<Shared>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.connections(-1);
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    kind: Acceptor,
    shared: Arc<Shared>,
    lease: Lease,
    lifecycle: Lifecycle,
) {
    let _ = stream.set_nodelay(true);
    let runtime = shared.runtime.load_full();
    let limits = &runtime.config.limits;
    let activity = Activity::new();
    let io = IdleTimeout::new(
        stream,
        limits.idle_timeout,
        activity.clone(),
        Box::new(lease),
    );
    let mut conn = Connection {
        info: ConnInfo {
            peer_ip: PeerIp::new(peer.ip()),
            scheme: if kind.tls { "https" } else { "http" },
            redirect_to_port: kind.redirect_to_port,
            client_cert: None,
            tls_version: None,
        },
        activity,
        idle_timeout: limits.idle_timeout,
        header_read_timeout: limits.header_read_timeout,
        lifecycle,
    };
    let builders = http_builders(limits);
    if !kind.tls {
        drop(runtime);
        serve_http(io, conn, shared, &builders, false).await;
        return;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(runtime.tls.clone());
    // Boxed: the handshake's state is freed once it is done, not kept in the connection's task.
    let accept = Box::pin(acceptor.accept(io));
    // The stream boxed too: rustls' connection state (~1.3 KiB) would otherwise sit inline in this
    // task and in every future that carries the stream, for as long as the connection lives,
    // parked or not (BENCHMARKS.md, "Future size").
    let handshake = tokio::time::timeout(limits.header_read_timeout, accept)
        .await
        .map(|accepted| accepted.map(Box::new));
    drop(runtime);
    match handshake {
        Ok(Ok(tls)) => {
            // Once per connection: every request on it shares the identity it proved.
            let session = tls.get_ref().1;
            conn.info.client_cert = crate::tls::client_auth::identify(session.peer_certificates());
            conn.info.tls_version = tls_version(session.protocol_version());
            let h2 = session.alpn_protocol() == Some(b"h2");
            serve_http(tls, conn, shared, &builders, h2).await;
        }
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// The access log's `tls` field for a negotiated version.
fn tls_version(version: Option<rustls::ProtocolVersion>) -> Option<&'static str> {
    match version? {
        rustls::ProtocolVersion::TLSv1_3 => Some("1.3"),
        rustls::ProtocolVersion::TLSv1_2 => Some("1.2"),
        _ => Some("other"),
    }
}

/// One accepted connection, past its TLS handshake.
struct Connection {
    info: ConnInfo,
    activity: Arc<Activity>,
    idle_timeout: std::time::Duration,
    header_read_timeout: std::time::Duration,
    lifecycle: Lifecycle,
}

/// hyper's HTTP/1 builder and hyper-util's auto builder (h2) with the configured limits.
fn http_builders(limits: &Limits) -> Builders {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // No timer for hyper: the connection's `ScanIo` bounds each request head by
    // `header_read_timeout`, without a boxed timer per request (`head_scan`'s module doc).
    http1
        .header_read_timeout(None)
        .max_buf_size(crate::listen::http1_buffer(limits));
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(crate::listen::http1_buffer(limits));
    auto.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)));
    Builders { http1, auto }
}

/// Serves HTTP on a connection (past TLS): builds its service, then [`drive::serve`] runs it
/// (parking HTTP/1 keep-alive connections between requests) inside the connection's
/// [`TunnelScope`]. `h2`: ALPN chose HTTP/2.
async fn serve_http<I>(io: I, conn: Connection, shared: Arc<Shared>, builders: &Builders, h2: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Connection {
        info,
        activity,
        idle_timeout,
        header_read_timeout,
        lifecycle,
    } = conn;
    let info = Arc::new(info);
    let conn_info = info.clone();
    let kill = lifecycle.kill.clone();
    let (io, verdict) = ScanIo::new(TrailerGuard::new(io), header_read_timeout, activity.clone());
    let requests = Arc::new(AtomicU64::new(0));
    let counter = activity.clone();
    let owner = shared.clone();
    let signals = Arc::new(ParkSignals::default());
    let dispatched = signals.clone();
    let service = service_fn(move |mut req| {
        dispatched.request_dispatched();
        // Counts the request as open until its response body is dropped (SPEC §8.7).
        let guard = counter.open_request();
        let shared = shared.clone();
        let info = info.clone();
        let index = requests.fetch_add(1, Ordering::Relaxed);
        if let Some(shape) = verdict.shape_of(index) {
            req.extensions_mut().insert(SmugglingShape(shape));
        }
        async move {
            let response = pipeline::handle(req, &info, &shared).await;
            Ok::<_, Infallible>(hold_until_sent(response, guard))
        }
    });
    let on_refused_head = |status| rejected::record(status, &conn_info, &owner);
    let driver = Driver {
        builders,
        activity,
        signals,
        idle_timeout,
        header_read_timeout,
        lifecycle,
        metrics: &owner.metrics,
        on_refused_head: &on_refused_head,
    };
    // Boxed: `run` takes its future by value and would otherwise hold it twice in this task's
    // state, which every connection's task is allocated at (24.8 KiB before; -Zprint-type-sizes).
    TunnelScope::new(kill)
        .run(Box::pin(drive::serve(io, service, h2, driver)))
        .await;
}

/// Keeps `guard` until the response body is dropped; after a `101` the connection is a tunnel
/// and only its byte clock applies.
fn hold_until_sent(response: Response<Body>, guard: RequestGuard) -> Response<Guarded> {
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        guard.activity().became_tunnel();
    }
    response.map(|body| Guarded {
        inner: body,
        _guard: guard,
    })
}

pin_project_lite::pin_project! {
    /// A response body that ends its request for [`Activity`] when dropped.
    struct Guarded {
        #[pin]
        inner: Body,
        _guard: RequestGuard,
    }
}

impl http_body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = crate::http::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
