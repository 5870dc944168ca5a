//! [`IdleTimeout`]: an IO wrapper that fails a connection once no byte has moved in either
//! direction for `idle_timeout`. Activity only stores an `Instant`; the timer is re-armed lazily
//! when it fires, so the per-read cost is one clock read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    /// Wraps a connection's IO with an idle deadline.
    pub struct IdleTimeout<T> {
        #[pin]
        inner: T,
        timer: Pin<Box<Sleep>>,
        idle: Duration,
        last_activity: Instant,
    }
}

impl<T> IdleTimeout<T> {
    /// Wraps `inner`; a zero `idle` disables the timeout.
    pub fn new(inner: T, idle: Duration) -> Self {
        let now = Instant::now();
        let idle = if idle.is_zero() {
            Duration::from_secs(365 * 24 * 3600)
        } else {
            idle
        };
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            idle,
            last_activity: now,
        }
    }

    /// The wrapped IO.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T> IdleTimeout<T> {
    /// Called when the inner IO is pending: true if the idle deadline has really passed.
    fn expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = *this.last_activity + *this.idle;
            if deadline <= Instant::now() {
                return true;
            }
            this.timer.as_mut().reset(deadline);
        }
    }
}

use std::future::Future;

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

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
