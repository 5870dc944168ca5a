//! Body types: the boxed [`Body`] every response uses, the request-size limit enforced while
//! streaming ([`Limited`]), and a body that can be handed to a second upstream attempt if the
//! first never read it ([`Replayable`]). Nothing here buffers.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response gatehouse writes and every request it forwards.
pub type Body = BoxBody<Bytes, BoxError>;

/// A complete body from bytes or a string.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// The request body grew past `max_body_bytes` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyLimitExceeded {
    /// The configured limit.
    pub limit: u64,
}

impl BodyLimitExceeded {
    /// True if `error` or any error in its `source` chain is a [`BodyLimitExceeded`].
    pub fn is_cause_of(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(err) = current {
            if err.is::<Self>() {
                return true;
            }
            current = err.source();
        }
        false
    }
}

pin_project_lite::pin_project! {
    /// Fails with [`BodyLimitExceeded`] as soon as more than `limit` bytes have streamed through.
    pub struct Limited<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
    }
}

impl<B> Limited<B> {
    /// Wraps `inner`, allowing at most `limit` bytes.
    pub fn new(inner: B, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
        }
    }
}

impl<B> HttpBody for Limited<B>
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

/// Where a [`Replayable`] body waits until the first poll takes it.
type Slot = Arc<Mutex<Option<Body>>>;

/// A body that stays in a shared slot until the upstream connection first polls it. If an attempt
/// fails before that (connection refused), [`Replayable::retry`] yields a fresh wrapper for the
/// next target, so a request that never reached an upstream can be retried safely.
pub struct Replayable {
    slot: Slot,
    taken: Option<Body>,
    size_hint: SizeHint,
    end_stream: bool,
}

impl Replayable {
    /// Parks `body` in a new slot.
    pub fn new(body: Body) -> Self {
        let size_hint = body.size_hint();
        let end_stream = body.is_end_stream();
        Self {
            slot: Arc::new(Mutex::new(Some(body))),
            taken: None,
            size_hint,
            end_stream,
        }
    }

    /// A new wrapper over the same slot, if this attempt never read the body.
    pub fn retry(&self) -> Option<Self> {
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
        let body = Limited::new(Full::new(Bytes::from_static(b"0123456789")), 4);
        let error = body.collect().await.expect_err("over the limit");
        assert!(BodyLimitExceeded::is_cause_of(error.as_ref()));
    }

    #[tokio::test]
    async fn limited_body_passes_at_the_limit() {
        let body = Limited::new(Full::new(Bytes::from_static(b"0123")), 4);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "0123");
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
