//! Body types: the boxed [`Body`] every response uses, the request-size limit enforced while
//! streaming ([`LimitedBody`]), the client's request body with its failures told apart from the
//! upstream's ([`ClientBody`]), the bounded discard of a body the gateway answered without
//! reading ([`discard`]), and a body that can be handed to a second upstream attempt
//! ([`Replayable`]). Nothing here buffers.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors carried by bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response gatehouse writes and every request it forwards.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// A complete body from bytes or a string.
pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Boxes any body whose error converts into [`BoxError`].
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// The request body grew past `max_body_bytes` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub(crate) struct BodyLimitExceeded {
    /// The configured limit.
    pub(crate) limit: u64,
}

impl BodyLimitExceeded {
    /// True if `error` or any error in its `source` chain is a [`BodyLimitExceeded`].
    pub(crate) fn is_cause_of(error: &(dyn std::error::Error + 'static)) -> bool {
        caused_by::<Self>(error)
    }
}

/// True if `error` or any error in its `source` chain is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(err) = current {
        if err.is::<E>() {
            return true;
        }
        current = err.source();
    }
    false
}

pin_project_lite::pin_project! {
    /// Fails with [`BodyLimitExceeded`] as soon as more than `limit` bytes have streamed through.
    ///
    /// Not `http_body_util::Limited`: that one narrows the size hint to the limit, and with
    /// `max_body_bytes = 0` a chunked body then looks exactly empty, so hyper sends the upstream
    /// an empty request and drops the client's bytes (200 instead of 413).
    /// `tests/it/structure.rs` pins it.
    pub(crate) struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
    }
}

impl<B> LimitedBody<B> {
    /// Wraps `inner`, allowing at most `limit` bytes.
    pub(crate) fn new(inner: B, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
        }
    }
}

impl<B> HttpBody for LimitedBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        return Poll::Ready(Some(Err(Box::new(BodyLimitExceeded {
                            limit: *this.limit,
                        }))));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body failed: its framing is broken (a bad chunk size, chunk data without
/// its CRLF, fewer bytes than `Content-Length`) or the client went away mid-body. It is the
/// client's fault, never the upstream's: 400, not 502.
#[derive(Debug, thiserror::Error)]
#[error("malformed request body")]
pub(crate) struct ClientBodyError(#[source] BoxError);

impl ClientBodyError {
    /// True if `error` or any error in its `source` chain is a [`ClientBodyError`].
    pub(crate) fn is_cause_of(error: &(dyn std::error::Error + 'static)) -> bool {
        caused_by::<Self>(error)
    }
}

pin_project_lite::pin_project! {
    /// The client's request body on its way upstream: every error it yields becomes a
    /// [`ClientBodyError`], so the upstream call that fails because of it can say whose fault it
    /// was. Failing the body makes hyper abort the upstream request (the connection is closed
    /// before the last chunk or byte), so the upstream never sees a complete request.
    pub(crate) struct ClientBody<B> {
        #[pin]
        inner: B,
    }
}

impl<B> ClientBody<B> {
    /// Wraps the client's body.
    pub(crate) fn new(inner: B) -> Self {
        Self { inner }
    }
}

impl<B> HttpBody for ClientBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        self.project()
            .inner
            .poll_frame(cx)
            .map_err(|error| ClientBodyError(error.into()))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How much of an unread request body [`discard`] reads before giving up (NGINX discards in
/// the same spirit; a client that sends more gets `Connection: close` instead).
pub(crate) const DISCARD_MAX_BYTES: u64 = 64 * 1024;

/// How long [`discard`] waits for the rest of an unread request body.
pub(crate) const DISCARD_MAX_TIME: Duration = Duration::from_secs(1);

/// Reads and drops the rest of a request body the gateway answered without reading, so the
/// HTTP/1.1 connection stays in step for the client's next request. True when the body ended
/// within `max_bytes` and `max_time`; false when it is larger, slower or broken (the connection
/// must then be closed, and the response must say so).
pub(crate) async fn discard<B>(body: B, max_bytes: u64, max_time: Duration) -> bool
where
    B: HttpBody + Unpin,
{
    if body.is_end_stream() {
        return true;
    }
    if body.size_hint().lower() > max_bytes {
        return false;
    }
    let drain = async move {
        let mut body = body;
        let mut read = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Some(data) = frame.data_ref() {
                read = read.saturating_add(bytes::Buf::remaining(data) as u64);
                if read > max_bytes {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(max_time, drain).await.unwrap_or(false)
}

/// Where a [`Replayable`] body waits until the first poll takes it.
type Slot = Arc<Mutex<Option<Body>>>;

/// A body that stays in a shared slot until the upstream connection first polls it, so a request
/// whose first attempt never got a connection can take the same body to the next target
/// ([`Replayable::retry`]).
///
/// The slot says only whether the *body* was polled, not whether the *request* was sent: hyper
/// never polls an empty body, so a bodyless request whose head went out still finds its slot
/// full. Whether a retry is allowed at all is decided by the caller from the failure (no
/// connection was made); the slot just hands the body over.
pub(crate) struct Replayable {
    slot: Slot,
    taken: Option<Body>,
    size_hint: SizeHint,
    end_stream: bool,
}

impl Replayable {
    /// Parks `body` in a new slot.
    pub(crate) fn new(body: Body) -> Self {
        let size_hint = body.size_hint();
        let end_stream = body.is_end_stream();
        Self {
            slot: Arc::new(Mutex::new(Some(body))),
            taken: None,
            size_hint,
            end_stream,
        }
    }

    /// A new wrapper over the same slot, if no attempt has polled the body yet.
    pub(crate) fn retry(&self) -> Option<Self> {
        let untouched = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        untouched.then(|| Self {
            slot: self.slot.clone(),
            taken: None,
            size_hint: self.size_hint,
            end_stream: self.end_stream,
        })
    }
}

impl HttpBody for Replayable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.taken.is_none() {
            let body = self
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            match body {
                Some(body) => self.taken = Some(body),
                // Another wrapper over this slot already took the body; nothing is left to send.
                None => return Poll::Ready(Some(Err("request body already consumed".into()))),
            }
        }
        match self.taken.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.end_stream && self.taken.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.taken
            .as_ref()
            .map_or_else(|| self.size_hint, HttpBody::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limited_body_fails_past_the_limit() {
        let body = LimitedBody::new(Full::new(Bytes::from_static(b"0123456789")), 4);
        let error = body.collect().await.expect_err("over the limit");
        assert!(BodyLimitExceeded::is_cause_of(error.as_ref()));
    }

    #[tokio::test]
    async fn limited_body_passes_at_the_limit() {
        let body = LimitedBody::new(Full::new(Bytes::from_static(b"0123")), 4);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "0123");
    }

    /// A body whose stream fails after one chunk, as a client's broken chunked body does.
    fn failing_body() -> impl HttpBody<Data = Bytes, Error = BoxError> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"hello"))),
            Err("invalid chunk size".into()),
        ];
        http_body_util::StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn client_body_errors_are_told_apart() {
        let error = LimitedBody::new(ClientBody::new(failing_body()), 1024)
            .collect()
            .await
            .expect_err("the body fails");
        assert!(ClientBodyError::is_cause_of(error.as_ref()));
        assert!(!BodyLimitExceeded::is_cause_of(error.as_ref()));
        assert_eq!(error.to_string(), "malformed request body");
    }

    #[tokio::test]
    async fn discard_reads_a_small_body_to_its_end() {
        let small = Full::new(Bytes::from(vec![0u8; 1000]));
        assert!(discard(small, 1024, Duration::from_secs(1)).await);
        assert!(discard(Empty::<Bytes>::new(), 0, Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn discard_gives_up_on_large_broken_or_slow_bodies() {
        let large = Full::new(Bytes::from(vec![0u8; 2000]));
        assert!(!discard(large, 1024, Duration::from_secs(1)).await);
        assert!(!discard(failing_body(), 1024, Duration::from_secs(1)).await);
        let (_keep_open, slow) = slow_body();
        assert!(!discard(slow, 1024, Duration::from_millis(20)).await);
    }

    /// A body that never ends while the returned sender lives.
    fn slow_body() -> (
        tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
        impl HttpBody<Data = Bytes, Error = BoxError> + Unpin,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        (tx, http_body_util::StreamBody::new(Box::pin(stream)))
    }

    #[tokio::test]
    async fn replayable_retries_only_while_unread() {
        let first = Replayable::new(full("hello"));
        let second = first.retry().expect("unread body can be retried");
        assert_eq!(second.size_hint().exact(), Some(5));
        assert_eq!(second.collect().await.unwrap().to_bytes(), "hello");
        assert!(
            first.retry().is_none(),
            "a consumed body cannot be replayed"
        );
    }
}
