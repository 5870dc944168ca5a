//! Keep-alive HTTP/1.1 connections to one upstream target: lean connections for requests with
//! no body ([`super::exchange`]), and connections driven through hyper's connection-level client
//! (`hyper::client::conn::http1`) for requests with a body and WebSocket handshakes. Each kind
//! has its own list; together they keep at most `max_idle_per_target`.
//!
//! hyper-util's pooled client did the same job with more per request: a pool keyed by scheme and
//! authority behind one lock and a hash, a lazily built connect future of about 6.8 KiB moved
//! through every request's state, a task spawned per response to hand the connection back once
//! its body ended, and the connector's info inserted into every response's extensions. Here each
//! target has its own short list, a request takes the most recently used connection that is ready,
//! and a connection goes back to the list as soon as its response head arrived: the list skips a
//! connection whose body is still streaming (hyper reports it not ready) until it is.
//!
//! What stays as it was: the connector (DNS on every new connection, `TCP_NODELAY`, the connect
//! timeout, rustls with the upstream's roots), and the retry rule of [`super::upstream`]: a pooled
//! connection that closed before it took the request hands the request back, and it goes to a new
//! connection; any other failure may have delivered it and is final.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service as _;

use super::exchange::{self, Conn, ExchangeError, Keep, UpstreamBody};
use crate::http::body::{Body, BoxError};

/// Opens connections: plain TCP or rustls, as the target URI's scheme says.
pub(crate) type Connector = HttpsConnector<HttpConnector>;

/// Why a send failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened (DNS, refused, connect timeout, TLS handshake): no byte of
    /// the request was written.
    Connect(BoxError),
    /// The request met a connection and failed there; it may have been delivered.
    Request(hyper::Error),
    /// A bodyless request met a lean connection and failed there; it may have been delivered.
    Exchange(ExchangeError),
}

/// One target's idle (and recently used) connections.
pub(crate) struct TargetPool {
    /// hyper's connections, for requests with a body.
    connections: Mutex<Vec<Pooled>>,
    /// Lean connections, idle, most recently used last.
    idle: Mutex<Vec<IdleConn>>,
    /// How many each list holds, for the bound both share (`max_idle_per_target`), read
    /// without taking the other list's lock.
    connections_len: AtomicUsize,
    idle_len: AtomicUsize,
    max_idle: usize,
    idle_timeout: Duration,
    /// A reaper task is running for this pool.
    reaping: std::sync::atomic::AtomicBool,
    /// The running reaper's waker: an idle lean connection wakes it when its socket turns
    /// readable (the upstream closed it), so it is closed here too, not left half-open.
    reaper: Mutex<Option<Waker>>,
}

struct IdleConn {
    conn: Conn,
    /// When it went idle.
    since: Instant,
}

struct Pooled {
    sender: SendRequest<Body>,
    /// When it was last seen busy (put back with its response body still to come, or found
    /// not ready): its idle time counts from here.
    since: Instant,
}

impl Pooled {
    /// Whether it is kept: open, and not idle past `idle_timeout`. A connection still busy with
    /// its response body is not idle; its clock restarts.
    fn keep(&mut self, now: Instant, idle_timeout: Duration) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        if !self.sender.is_ready() {
            self.since = now;
        }
        now.duration_since(self.since) <= idle_timeout
    }
}

impl std::fmt::Debug for TargetPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetPool")
            .field("max_idle", &self.max_idle)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl TargetPool {
    /// An empty pool keeping at most `max_idle` connections, each for at most `idle_timeout`
    /// unused.
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            connections: Mutex::new(Vec::new()),
            idle: Mutex::new(Vec::new()),
            connections_len: AtomicUsize::new(0),
            idle_len: AtomicUsize::new(0),
            max_idle,
            idle_timeout,
            reaping: std::sync::atomic::AtomicBool::new(false),
            reaper: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pooled>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<IdleConn>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle lean connection that is neither expired (at `now`) nor closed
    /// by its upstream; the others found on the way are closed.
    fn checkout_conn(&self, now: Instant) -> Option<Conn> {
        let mut idle = self.lock_idle();
        let mut found = None;
        while let Some(entry) = idle.pop() {
            if now.duration_since(entry.since) <= self.idle_timeout && !entry.conn.looks_closed() {
                found = Some(entry.conn);
                break;
            }
        }
        self.idle_len.store(idle.len(), Ordering::Relaxed);
        found
    }

    /// Keeps a lean connection whose response was read in full, up to `max_idle`; beyond that,
    /// or if its upstream already closed it, it is closed.
    pub(super) fn put_conn(self: &Arc<Self>, conn: Conn) {
        if self.max_idle == 0 {
            return;
        }
        {
            let reaper = self.reaper.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(waker) = reaper.as_ref()
                && conn.watch_close(waker)
            {
                return;
            }
        }
        {
            let mut idle = self.lock_idle();
            if idle.len() + self.connections_len.load(Ordering::Relaxed) >= self.max_idle {
                return;
            }
            idle.push(IdleConn {
                conn,
                since: Instant::now(),
            });
            self.idle_len.store(idle.len(), Ordering::Relaxed);
        }
        self.start_reaper();
    }

    /// One pass of the reaper: drops expired connections of both kinds (`expire`) and lean ones
    /// their upstream closed, watching the rest for a close with `waker`. False once both lists
    /// are empty.
    fn sweep(&self, waker: &Waker, expire: bool) -> bool {
        let now = Instant::now();
        let mut idle = self.lock_idle();
        idle.retain(|entry| {
            let fresh = !expire || now.duration_since(entry.since) <= self.idle_timeout;
            fresh && !entry.conn.watch_close(waker)
        });
        self.idle_len.store(idle.len(), Ordering::Relaxed);
        let mut connections = self.lock();
        if expire {
            connections.retain_mut(|entry| entry.keep(now, self.idle_timeout));
            self.connections_len
                .store(connections.len(), Ordering::Relaxed);
        }
        !(idle.is_empty() && connections.is_empty())
    }

    /// The most recently used connection that is ready for a request; closed and expired ones
    /// are dropped on the way.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let now = Instant::now();
        let mut connections = self.lock();
        let mut i = connections.len();
        while i > 0 {
            i -= 1;
            let entry = &mut connections[i];
            if !entry.keep(now, self.idle_timeout) {
                connections.swap_remove(i);
            } else if entry.sender.is_ready() {
                let sender = connections.swap_remove(i).sender;
                self.connections_len
                    .store(connections.len(), Ordering::Relaxed);
                return Some(sender);
            }
        }
        self.connections_len
            .store(connections.len(), Ordering::Relaxed);
        None
    }

    /// Hands a connection back after its response head arrived. Beyond `max_idle` it is
    /// dropped: hyper closes it once its response is done.
    fn put(self: &Arc<Self>, sender: SendRequest<Body>) {
        if sender.is_closed() || self.max_idle == 0 {
            return;
        }
        {
            let mut connections = self.lock();
            if connections.len() + self.idle_len.load(Ordering::Relaxed) >= self.max_idle {
                return;
            }
            connections.push(Pooled {
                sender,
                since: Instant::now(),
            });
            self.connections_len
                .store(connections.len(), Ordering::Relaxed);
        }
        self.start_reaper();
    }

    /// Closes connections idle past `idle_timeout` even when no request comes to check: a task
    /// that runs only while the pool holds connections.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(reap(pool, every));
    }
}

impl Keep for TargetPool {
    fn keep(this: &Arc<Self>, conn: Conn) {
        this.put_conn(conn);
    }
}

/// The reaper: every `every`, drops closed and expired connections, and at once a lean one its
/// upstream closed; ends when the pool is empty or gone (a reload replaced the upstream).
async fn reap(pool: Weak<TargetPool>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    std::future::poll_fn(|cx| {
        let Some(pool) = pool.upgrade() else {
            return Poll::Ready(());
        };
        let mut expire = false;
        while tick.poll_tick(cx).is_ready() {
            expire = true;
        }
        {
            let mut reaper = pool.reaper.lock().unwrap_or_else(PoisonError::into_inner);
            if !reaper.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *reaper = Some(cx.waker().clone());
            }
        }
        if pool.sweep(cx.waker(), expire) {
            return Poll::Pending;
        }
        *pool.reaper.lock().unwrap_or_else(PoisonError::into_inner) = None;
        pool.reaping.store(false, Ordering::Release);
        Poll::Ready(())
    })
    .await;
}

/// Sends a bodyless request on an idle lean connection to the target at `connect_to`, or on a
/// new one: `build` writes its head (it may be called once), `method` decides whether the
/// response has a body, `now` (the caller's clock read) judges which idle connections expired.
///
/// # Errors
/// [`SendError::Connect`] when no connection could be opened, [`SendError::Exchange`] when the
/// connection failed with the request.
pub(crate) async fn exchange(
    pool: &Arc<TargetPool>,
    connector: &Connector,
    connect_to: &Uri,
    method: &Method,
    now: Instant,
    build: impl FnOnce(&mut Vec<u8>),
) -> Result<Response<UpstreamBody<TargetPool>>, SendError> {
    let conn = match pool.checkout_conn(now) {
        Some(conn) => conn,
        // Boxed, as in `send`: rare, and large.
        None => Box::pin(open(connector, connect_to)).await?,
    };
    exchange::exchange(conn, pool, method, build)
        .await
        .map_err(SendError::Exchange)
}

/// Opens a lean connection.
async fn open(connector: &Connector, uri: &Uri) -> Result<Conn, SendError> {
    let io = connector
        .clone()
        .call(uri.clone())
        .await
        .map_err(SendError::Connect)?;
    Ok(Conn::new(io))
}

/// Sends `request` (origin-form URI, `Host` set) on a pooled connection to the target at
/// `connect_to`, or on a new one.
///
/// # Errors
/// [`SendError::Connect`] when no connection could be opened, [`SendError::Request`] when the
/// connection failed with the request.
pub(crate) async fn send(
    pool: &Arc<TargetPool>,
    connector: &Connector,
    connect_to: &Uri,
    mut request: Request<Body>,
) -> Result<Response<Incoming>, SendError> {
    if let Some(mut sender) = pool.checkout() {
        match sender.try_send_request(request).await {
            Ok(response) => {
                pool.put(sender);
                return Ok(response);
            }
            Err(mut failed) => match failed.take_message() {
                // Closed before it took the request: nothing was written; use a new connection.
                Some(unsent) => request = unsent,
                None => return Err(SendError::Request(failed.into_error())),
            },
        }
    }
    // Boxed: the connect future (TCP, TLS, handshake) is ~2.4 KiB and rare; inline, every
    // request's future would carry and move it (BENCHMARKS.md, "Future size").
    let mut sender = Box::pin(connect(connector, connect_to)).await?;
    let response = sender
        .send_request(request)
        .await
        .map_err(SendError::Request)?;
    pool.put(sender);
    Ok(response)
}

/// Opens a connection, starts its task, and waits until it takes requests.
async fn connect(connector: &Connector, uri: &Uri) -> Result<SendRequest<Body>, SendError> {
    let io = connector
        .clone()
        .call(uri.clone())
        .await
        .map_err(SendError::Connect)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|error| SendError::Connect(error.into()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    sender
        .ready()
        .await
        .map_err(|error| SendError::Connect(error.into()))?;
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_rustls::MaybeHttpsStream;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncReadExt as _;
    use tokio::net::{TcpListener, TcpStream};

    /// `n` lean connections to a loopback listener, with the listener's ends.
    async fn conns(n: usize) -> (Vec<Conn>, Vec<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let tcp = TcpStream::connect(addr).await.unwrap();
            ours.push(Conn::new(MaybeHttpsStream::Http(TokioIo::new(tcp))));
            theirs.push(listener.accept().await.unwrap().0);
        }
        (ours, theirs)
    }

    /// Resolves once `done` holds, polling it after every turn of the runtime; at most 5 s.
    async fn until(mut done: impl FnMut() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("condition not reached within 5 s");
    }

    #[tokio::test]
    async fn idle_lean_connections_are_capped_and_the_extra_one_closed() {
        let pool = TargetPool::new(2, Duration::from_secs(60));
        let (ours, mut theirs) = conns(3).await;
        for conn in ours {
            pool.put_conn(conn);
        }
        assert_eq!(pool.lock_idle().len(), 2);
        // The third was dropped: its peer reads end of stream.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), theirs[2].read(&mut byte)).await;
        assert_eq!(read.unwrap().unwrap(), 0);
        assert!(pool.checkout_conn(Instant::now()).is_some());
        assert!(pool.checkout_conn(Instant::now()).is_some());
        assert!(pool.checkout_conn(Instant::now()).is_none());
    }

    #[tokio::test]
    async fn an_idle_connection_its_upstream_closes_is_dropped_without_a_request() {
        let pool = TargetPool::new(4, Duration::from_secs(60));
        let (mut ours, mut theirs) = conns(3).await;
        // One goes idle before the reaper runs (its first pass watches it), the others after
        // (they are watched as they are put back).
        pool.put_conn(ours.remove(0));
        until(|| pool.reaper.lock().unwrap().is_some()).await;
        for conn in ours {
            pool.put_conn(conn);
        }
        drop(theirs.remove(1));
        until(|| pool.lock_idle().len() == 2).await;
        drop(theirs.remove(0));
        // The reaper is woken by each close; the idle timeout (60 s) plays no part.
        until(|| pool.lock_idle().len() == 1).await;
        let survivor = pool
            .checkout_conn(Instant::now())
            .expect("the open one stays");
        assert!(!survivor.looks_closed());
        drop(theirs);
    }

    #[tokio::test]
    async fn a_connection_with_stray_bytes_is_not_reused() {
        use tokio::io::AsyncWriteExt as _;
        let pool = TargetPool::new(4, Duration::from_secs(60));
        let (mut ours, mut theirs) = conns(1).await;
        let conn = ours.remove(0);
        theirs[0]
            .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .unwrap();
        until(|| conn.looks_closed()).await;
        pool.put_conn(conn);
        assert!(pool.checkout_conn(Instant::now()).is_none());
    }
}
