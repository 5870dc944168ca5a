//! The IO an HTTP/1 keep-alive connection is served through, so that the server can take it back
//! from hyper between requests ([`crate::server`] "parks" an idle connection: hyper's 16 KiB of
//! read and write buffers and its dispatcher are freed, and only the socket and its TLS state
//! remain until the next request's first bytes arrive).
//!
//! [`ParkIo`] does three things for that:
//! - it replays a *prefix*: the first bytes of the next request, read while parked, are handed to
//!   the next hyper connection before the socket is read again;
//! - it counts the bytes handed to hyper since hyper dispatched its latest request head
//!   ([`ParkSignals::request_dispatched`]). Parking is only safe at a message boundary, and a
//!   non-zero count means hyper may hold part of a request (a body, or the next head);
//! - while [`ParkSignals`] says "parking", its `poll_shutdown` leaves the socket open: hyper
//!   believes it closed the connection, and the server keeps the IO for the next request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much a parked connection reads when its next request starts; hyper reads the rest.
const WAKE_READ: usize = 1024;

/// What the connection's driver, its service and its [`ParkIo`] share.
#[derive(Debug, Default)]
pub(crate) struct ParkSignals {
    /// Bytes handed to hyper since it dispatched its latest request head.
    unparsed: AtomicU64,
    /// Request heads hyper has dispatched on this connection.
    dispatched: AtomicU64,
    /// Set while the driver asks hyper to let go of an idle connection.
    parking: AtomicBool,
}

impl ParkSignals {
    /// Called by the service for every request hyper dispatches.
    pub(crate) fn request_dispatched(&self) {
        self.unparsed.store(0, Ordering::Relaxed);
        self.dispatched.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes hyper has read since its latest request head (0: it holds no part of a request,
    /// unless the head's own read carried more).
    pub(crate) fn unparsed(&self) -> u64 {
        self.unparsed.load(Ordering::Relaxed)
    }

    /// Request heads dispatched so far.
    pub(crate) fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::Relaxed)
    }

    /// While set, shutting the IO down leaves the socket open.
    pub(crate) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Relaxed);
    }

    fn count(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.unparsed.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A connection's IO with a replayable prefix, a byte count and a parking switch; see the module
/// documentation.
#[derive(Debug)]
pub(crate) struct ParkIo<T> {
    inner: T,
    prefix: Bytes,
    signals: Arc<ParkSignals>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> ParkIo<T> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: T, signals: Arc<ParkSignals>) -> Self {
        Self {
            inner,
            prefix: Bytes::new(),
            signals,
        }
    }

    /// The bytes read while parked and not yet handed on.
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// Waits, holding no buffer, until the peer sends something; keeps what came as the prefix.
    /// `Ok(false)` is the end of the stream.
    ///
    /// # Errors
    /// The socket's or the TLS layer's read error.
    pub(crate) fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if !self.prefix.is_empty() {
            return Poll::Ready(Ok(true));
        }
        // A stack buffer for this one read only: nothing is kept while the poll is pending.
        let mut chunk = [0u8; WAKE_READ];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        if buf.filled().is_empty() {
            return Poll::Ready(Ok(false));
        }
        self.prefix = Bytes::copy_from_slice(buf.filled());
        Poll::Ready(Ok(true))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ParkIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            this.signals.count(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.signals.count(buf.filled().len() - before);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ParkIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.signals.parking.load(Ordering::Relaxed) {
            // hyper is letting go of an idle connection: what it wrote is flushed, the socket
            // stays open for the next request.
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_prefix_is_replayed_before_the_socket_and_every_byte_is_counted() {
        let (client, server) = tokio::io::duplex(64);
        let signals = Arc::new(ParkSignals::default());
        let mut io = ParkIo::new(server, signals.clone());
        let mut client = client;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let woke = std::future::poll_fn(|cx| io.poll_wake(cx)).await.unwrap();
        assert!(woke);
        assert_eq!(io.prefix(), b"GET / HTTP/1.1\r\n");
        assert_eq!(
            signals.unparsed(),
            0,
            "waking reads for the next hyper, not for hyper"
        );
        client.write_all(b"Host: a\r\n\r\n").await.unwrap();
        let mut head = vec![0u8; 27];
        io.read_exact(&mut head).await.unwrap();
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(signals.unparsed(), 27);
        signals.request_dispatched();
        assert_eq!((signals.unparsed(), signals.dispatched()), (0, 1));
    }

    #[tokio::test]
    async fn shutdown_while_parking_keeps_the_socket_open() {
        let (mut client, server) = tokio::io::duplex(64);
        let signals = Arc::new(ParkSignals::default());
        let mut io = ParkIo::new(server, signals.clone());
        signals.set_parking(true);
        io.shutdown().await.unwrap();
        io.write_all(b"still open").await.unwrap();
        let mut got = [0u8; 10];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"still open");
        signals.set_parking(false);
        io.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(
            client.read_to_end(&mut rest).await.unwrap(),
            0,
            "a real shutdown ends it"
        );
    }

    #[tokio::test]
    async fn the_end_of_the_stream_wakes_with_false() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = ParkIo::new(server, Arc::new(ParkSignals::default()));
        drop(client);
        let woke = std::future::poll_fn(|cx| io.poll_wake(cx)).await.unwrap();
        assert!(!woke);
    }
}
