//! Idle connections (SPEC §8.7: idle means idle). Two clocks, each for its own case:
//!
//! - [`Activity`] counts a connection's open requests (HTTP/1 requests, HTTP/2 streams): a
//!   [`RequestGuard`] lives from the service call until the response body is dropped. While no
//!   request is open, [`Activity::idle`] resolves `idle_timeout` after the last one ended, and the
//!   server then closes the connection gracefully (HTTP/2 GOAWAY, HTTP/1 close). Bytes do not
//!   reset this clock, so keep-alive PINGs or SETTINGS cannot keep an empty h2 connection open.
//! - [`IdleTimeout`], an IO wrapper, fails the connection once no byte has moved in either
//!   direction for `idle_timeout` *while a request is open or the connection became a tunnel*: a
//!   stalled request or WebSocket ends, a slow-but-streaming one does not. Activity only stores
//!   an `Instant`; the timer is re-armed lazily when it fires, so the per-read cost is one clock
//!   read. The wrapper also holds a lease (the `max_connections` permit) for the IO's whole life,
//!   which includes a WebSocket tunnel's, since hyper hands the IO to the tunnel on upgrade.

use std::any::Any;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::io_delegate::forward_write_control;
use tokio::time::{Instant, Sleep};

/// Stands in for "no timeout" when `idle_timeout` is zero.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

fn effective(idle: Duration) -> Duration {
    if idle.is_zero() { NEVER } else { idle }
}

/// A connection's open requests and when the last one ended.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Reference point for `idle_since`.
    base: Instant,
    /// Requests (streams) whose response has not been dropped yet.
    open: AtomicUsize,
    /// Nanoseconds after `base` at which the latest request ended (0: none yet).
    idle_since: AtomicU64,
    /// The connection was handed to a WebSocket tunnel: only the byte clock applies now.
    tunnel: AtomicBool,
}

impl Activity {
    /// A connection that just opened: idle from now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            tunnel: AtomicBool::new(false),
        })
    }

    /// Counts a request as open until the returned guard is dropped.
    pub(crate) fn open_request(self: &Arc<Self>) -> RequestGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// Marks the connection as a tunnel (after a `101 Switching Protocols`).
    pub(crate) fn became_tunnel(&self) {
        self.tunnel.store(true, Ordering::Release);
    }

    /// True once the connection was handed to a tunnel: its bytes are no longer HTTP.
    pub(crate) fn is_tunnel(&self) -> bool {
        self.tunnel.load(Ordering::Acquire)
    }

    /// True while the byte clock applies: a request is open or the connection is a tunnel.
    fn busy(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0 || self.tunnel.load(Ordering::Acquire)
    }

    /// Resolves once no request has been open for `idle` (never, if `idle` is zero, or once the
    /// connection became a tunnel).
    ///
    /// Lazy, like [`IdleTimeout`]: one timer, re-armed when it fires, rather than a wake-up of
    /// the connection's task each time its last request ends. That wake-up was an extra poll
    /// of the whole connection, and a timer set and cancelled, on every HTTP/1 request
    /// (BENCHMARKS.md, "Instruction counts").
    pub(crate) async fn idle(&self, idle: Duration) {
        let idle = effective(idle);
        let timer = tokio::time::sleep_until(self.next_check(idle, Instant::now()));
        tokio::pin!(timer);
        loop {
            timer.as_mut().await;
            let now = Instant::now();
            let next = self.next_check(idle, now);
            if next <= now {
                return;
            }
            timer.as_mut().reset(next);
        }
    }

    /// When the connection-level idle clock should be looked at again: `idle` after the latest
    /// request ended (or the connection opened), or, while busy, a full `idle` from `now`.
    fn next_check(&self, idle: Duration, now: Instant) -> Instant {
        if self.busy() {
            return now + idle;
        }
        self.base + Duration::from_nanos(self.idle_since.load(Ordering::Acquire)) + idle
    }

    fn request_ended(&self) {
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Store the end time before the count drops, so `idle` never sees zero open requests
        // with a stale time.
        self.idle_since.fetch_max(now, Ordering::AcqRel);
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open request; dropping it (with the response body) ends the request for [`Activity`].
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    /// The connection this request belongs to.
    pub(crate) fn activity(&self) -> &Activity {
        &self.0
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

pin_project_lite::pin_project! {
    /// Wraps a connection's IO with a byte-level idle deadline (only while [`Activity`] is busy)
    /// and holds `lease` until the IO is dropped.
    pub(crate) struct IdleTimeout<T> {
        #[pin]
        inner: T,
        timer: Pin<Box<Sleep>>,
        // The waker the timer was last polled with: while the timer is not due and holds this
        // task's waker, a pending read or write need not poll it again.
        armed: Option<Waker>,
        idle: Duration,
        last_activity: Instant,
        activity: Arc<Activity>,
        lease: Box<dyn Any + Send + Sync>,
    }
}

impl<T> IdleTimeout<T> {
    /// Wraps `inner`; a zero `idle` disables the timeout. `lease` is dropped with the IO.
    pub(crate) fn new(
        inner: T,
        idle: Duration,
        activity: Arc<Activity>,
        lease: Box<dyn Any + Send + Sync>,
    ) -> Self {
        let now = Instant::now();
        let idle = effective(idle);
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            armed: None,
            idle,
            last_activity: now,
            activity,
            lease,
        }
    }

    /// Called when the inner IO is pending: true if the idle deadline has really passed.
    fn expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        let armed = this.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if armed && !this.timer.is_elapsed() {
            return false;
        }
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                if !armed {
                    *this.armed = Some(cx.waker().clone());
                }
                return false;
            }
            let deadline = *this.last_activity + *this.idle;
            let now = Instant::now();
            if deadline <= now {
                if this.activity.busy() {
                    return true;
                }
                // Between requests the connection-level clock decides (graceful close); the
                // byte clock restarts so a request that opens later gets its full `idle`.
                *this.last_activity = now;
                this.timer.as_mut().reset(now + *this.idle);
                continue;
            }
            this.timer.as_mut().reset(deadline);
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle timeout")
}

impl<T: AsyncRead> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match self.as_mut().project().inner.poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    *self.as_mut().project().last_activity = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.as_mut().project().inner.poll_write(cx, data) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    *self.as_mut().project().last_activity = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.as_mut().project().inner.poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    *self.as_mut().project().last_activity = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    forward_write_control!(inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn idle_waits_for_open_requests_then_counts_from_the_last_end() {
        let activity = Activity::new();
        let guard = activity.open_request();
        let idle = activity.idle(IDLE);
        tokio::pin!(idle);
        let early = tokio::time::timeout(IDLE * 3, idle.as_mut()).await;
        assert!(early.is_err(), "an open request is never idle");
        drop(guard);
        let ended = Instant::now();
        assert!(tokio::time::timeout(IDLE * 20, idle).await.is_ok());
        assert!(ended.elapsed() >= IDLE);
    }

    #[tokio::test]
    async fn a_tunnel_is_never_idle_at_connection_level() {
        let activity = Activity::new();
        activity.became_tunnel();
        let waited = tokio::time::timeout(IDLE * 3, activity.idle(IDLE));
        assert!(waited.await.is_err());
    }
}

#[cfg(test)]
mod io_tests;
