//! One bodyless request and its response over a keep-alive upstream connection, driven by the
//! task that asked for it: the head goes out in one write, the response head is read and parsed
//! into the read buffer's own bytes, and the response body is read by whoever polls it — the
//! client's connection. No task of its own, no channel, no second buffer.
//!
//! hyper's client (`hyper::client::conn::http1`) stays for requests with a body and for
//! WebSocket handshakes: it writes a streaming body while it reads the answer, and hands over an
//! upgraded connection. For a request with no body neither is needed, and hyper's dispatch —
//! a task per connection, an `mpsc` hop and a oneshot each way, a body channel — costs more than
//! the exchange itself (BENCHMARKS.md, "A lean upstream exchange").
//!
//! A connection goes back to its pool as soon as its response body has been read in full and
//! the upstream allowed reuse ([`crate::http::wire::Head::reusable`]). One dropped half-read is closed.
//! An idle connection is not polled; the pool checks it for a close or stray bytes before reuse
//! ([`Conn::looks_closed`]) and its reaper watches it ([`Conn::watch_close`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use http::Response;
use http_body::{Frame, SizeHint};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http::wire::{self, ChunkedDecoder, Decoded, Framing, Head, NameCache, WireError};

/// Where a connection goes once its response was read in full: its target's pool
/// (`super::pool::TargetPool`), which keeps it for another request or closes it.
pub(crate) trait Keep: Send + Sync + 'static {
    /// Takes `conn` back.
    fn keep(this: &Arc<Self>, conn: Conn);
}

/// Read buffer size: what one read asks the socket for.
const READ_CHUNK: usize = 8 * 1024;

/// Why an exchange failed. Every failure may have delivered the request: it is never resent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// Reading or writing the socket failed.
    #[error("upstream connection failed: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before its response was complete.
    #[error("upstream closed the connection before the response was complete")]
    Closed,
    /// The upstream's bytes are not a valid HTTP/1.1 response.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The upstream answered `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("upstream switched protocols unasked")]
    UnaskedUpgrade,
}

/// The socket under a connection: plain TCP or rustls over it.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TokioIo<TokioIo<TcpStream>>>>),
}

/// One keep-alive HTTP/1.1 connection to an upstream target, with its buffers.
pub(crate) struct Conn {
    io: Io,
    /// Bytes read and not yet parsed.
    read: BytesMut,
    /// The request head being written; kept for its capacity.
    write: Vec<u8>,
    /// The header names of its last responses.
    names: NameCache,
}

impl Conn {
    /// Takes over a connection the connector opened.
    pub(crate) fn new(stream: MaybeHttpsStream<TokioIo<TcpStream>>) -> Self {
        let io = match stream {
            MaybeHttpsStream::Http(tcp) => Io::Plain(tcp.into_inner()),
            MaybeHttpsStream::Https(tls) => Io::Tls(Box::new(tls.into_inner())),
        };
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            names: NameCache::default(),
        }
    }

    fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.get_ref().0.inner().inner(),
        }
    }

    /// Whether an idle connection must not be used: the upstream closed it or sent bytes nobody
    /// asked for. Costs no system call unless the socket became readable since its last read.
    pub(crate) fn looks_closed(&self) -> bool {
        self.peek_closed(Waker::noop())
    }

    /// [`Self::looks_closed`], and `waker` is woken when the socket next becomes readable: how
    /// the pool's reaper hears of an idle connection closed by its upstream.
    pub(crate) fn watch_close(&self, waker: &Waker) -> bool {
        self.peek_closed(waker)
    }

    fn peek_closed(&self, waker: &Waker) -> bool {
        if !self.read.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(waker);
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        match self.tcp().poll_peek(&mut cx, &mut buf) {
            Poll::Pending => false,
            Poll::Ready(Ok(_) | Err(_)) => true,
        }
    }

    /// Writes `head` (built by `build`, reusing the connection's buffer) and flushes it.
    async fn send_head(&mut self, build: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        let mut head = std::mem::take(&mut self.write);
        head.clear();
        build(&mut head);
        let result = self.write_all(&head).await;
        self.write = head;
        result
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_write(cx, bytes)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
        }
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, bytes),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, bytes),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(_) => Poll::Ready(Ok(())),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    /// Reads what the socket has into the read buffer; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        match &mut self.io {
            Io::Plain(tcp) => tokio_util::io::poll_read_buf(Pin::new(tcp), cx, &mut self.read),
            Io::Tls(tls) => {
                tokio_util::io::poll_read_buf(Pin::new(tls.as_mut()), cx, &mut self.read)
            }
        }
    }

    /// Reads until a complete response head is parsed; interim 1xx responses are dropped.
    async fn read_head(&mut self, method: &http::Method) -> Result<Head, ExchangeError> {
        loop {
            if let Some(head) = wire::parse_response_head(&mut self.read, method, &mut self.names)?
            {
                let status = head.response.status();
                if status == http::StatusCode::SWITCHING_PROTOCOLS {
                    return Err(ExchangeError::UnaskedUpgrade);
                }
                if status.is_informational() {
                    continue;
                }
                return Ok(head);
            }
            if std::future::poll_fn(|cx| self.poll_fill(cx)).await? == 0 {
                return Err(ExchangeError::Closed);
            }
        }
    }
}

/// Sends the request head `build` writes and reads the response head. The body is read by
/// polling the returned [`UpstreamBody`], which hands the connection back to `pool` once it is
/// read in full and reusable; a body already in the buffer is taken at once.
///
/// # Errors
/// [`ExchangeError`]; the connection is dropped (closed) with it.
pub(crate) async fn exchange<P: Keep>(
    mut conn: Conn,
    pool: &Arc<P>,
    method: &http::Method,
    build: impl FnOnce(&mut Vec<u8>),
) -> Result<Response<UpstreamBody<P>>, ExchangeError> {
    conn.send_head(build).await?;
    let Head {
        response,
        framing,
        reusable,
    } = conn.read_head(method).await?;
    let body = UpstreamBody::start(conn, framing, reusable, pool);
    Ok(response.map(|()| body))
}

/// A response body read straight off its upstream connection, which goes back to its pool `P`
/// when the body is done.
pub(crate) struct UpstreamBody<P: Keep> {
    state: State<P>,
}

enum State<P: Keep> {
    /// The whole body (or none) was read; the connection is already back in its pool.
    Done(Option<Bytes>),
    /// Still arriving.
    Reading(Box<Reading<P>>),
}

struct Reading<P: Keep> {
    conn: Conn,
    framing: Progress,
    reusable: bool,
    pool: Arc<P>,
    /// The upstream failed mid-body; the failure is reported on the next poll.
    failing: bool,
}

enum Progress {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

impl<P: Keep> UpstreamBody<P> {
    fn start(mut conn: Conn, framing: Framing, reusable: bool, pool: &Arc<P>) -> Self {
        let progress = match framing {
            Framing::Empty => return Self::done(None, conn, reusable, pool),
            Framing::Length(length) => {
                let buffered = conn.read.len() as u64;
                if buffered >= length {
                    let body = conn.read.split_to(length as usize).freeze();
                    let body = (!body.is_empty()).then_some(body);
                    return Self::done(body, conn, reusable, pool);
                }
                Progress::Length(length)
            }
            Framing::Chunked => Progress::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => Progress::UntilClose,
        };
        Self {
            state: State::Reading(Box::new(Reading {
                conn,
                framing: progress,
                reusable,
                pool: pool.clone(),
                failing: false,
            })),
        }
    }

    fn done(body: Option<Bytes>, conn: Conn, reusable: bool, pool: &Arc<P>) -> Self {
        release(conn, reusable, pool);
        Self {
            state: State::Done(body),
        }
    }
}

/// Hands a connection whose response was read in full back to its pool, if it may be reused
/// and nothing beyond the response arrived; otherwise drops (closes) it.
fn release<P: Keep>(conn: Conn, reusable: bool, pool: &Arc<P>) {
    if reusable && conn.read.is_empty() {
        P::keep(pool, conn);
    }
}

impl<P: Keep> Reading<P> {
    /// The body was read to its end.
    fn is_finished(&self) -> bool {
        match &self.framing {
            Progress::Length(left) => *left == 0,
            Progress::Chunked(decoder) => decoder.is_done(),
            Progress::UntilClose => false,
        }
    }

    /// The next piece of body, `None` at its end (the connection is then released).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ExchangeError>>> {
        loop {
            match self.take_buffered() {
                Ok(Some(Taken::Data(data))) => return Poll::Ready(Some(Ok(data))),
                Ok(Some(Taken::End)) => return Poll::Ready(None),
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
            let error = match ready!(self.conn.poll_fill(cx)) {
                Ok(0) if matches!(self.framing, Progress::UntilClose) => {
                    self.reusable = false;
                    return Poll::Ready(None);
                }
                Ok(0) => ExchangeError::Closed,
                Ok(_) => continue,
                Err(error) => error.into(),
            };
            // One turn before the failure: the server writes out what it already has (the head
            // and the bytes that came), instead of dropping it with the connection.
            if !self.failing {
                self.failing = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(Some(Err(error)));
        }
    }

    /// What the read buffer already holds: body bytes, the end, or `None` (read more).
    fn take_buffered(&mut self) -> Result<Option<Taken>, ExchangeError> {
        let read = &mut self.conn.read;
        match &mut self.framing {
            Progress::Length(0) => Ok(Some(Taken::End)),
            Progress::Length(_) | Progress::UntilClose if read.is_empty() => Ok(None),
            Progress::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(read.len());
                *left -= take as u64;
                Ok(Some(Taken::Data(read.split_to(take).freeze())))
            }
            Progress::UntilClose => Ok(Some(Taken::Data(read.split().freeze()))),
            Progress::Chunked(decoder) => match decoder.decode(read)? {
                Decoded::Data(data) => Ok(Some(Taken::Data(data))),
                Decoded::End => Ok(Some(Taken::End)),
                Decoded::NeedMore => Ok(None),
            },
        }
    }
}

enum Taken {
    Data(Bytes),
    End,
}

impl<P: Keep> std::fmt::Debug for UpstreamBody<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Done(_) => "read",
            State::Reading(_) => "reading",
        };
        f.debug_struct("UpstreamBody")
            .field("state", &state)
            .finish()
    }
}

impl<P: Keep> http_body::Body for UpstreamBody<P> {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        let this = self.get_mut();
        let reading = match &mut this.state {
            State::Done(body) => return Poll::Ready(body.take().map(|data| Ok(Frame::data(data)))),
            State::Reading(reading) => reading,
        };
        let next = ready!(reading.poll_next(cx));
        let finished = match &next {
            // The last bytes: the connection goes back now, and `is_end_stream` says so, for
            // servers that stop polling a body once its length is written.
            Some(Ok(_)) => reading.is_finished(),
            None | Some(Err(_)) => true,
        };
        if finished {
            let state = std::mem::replace(&mut this.state, State::Done(None));
            if let (State::Reading(reading), false) = (state, matches!(next, Some(Err(_)))) {
                let Reading {
                    conn,
                    reusable,
                    pool,
                    ..
                } = *reading;
                release(conn, reusable, &pool);
            }
        }
        Poll::Ready(next.map(|item| item.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            State::Reading(reading) => match reading.framing {
                Progress::Length(left) => SizeHint::with_exact(left),
                _ => SizeHint::default(),
            },
        }
    }
}
