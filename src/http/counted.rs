//! Bodies that count their bytes, for the access log and the byte counters: [`CountIn`] counts
//! the client's request body as the proxy reads it, [`OnEnd`] counts the response body as it is
//! handed to the connection and reports the total exactly once — when the body ends, fails, or
//! is dropped unfinished (the client went away). Neither buffers or copies.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::body::Body;

/// A shared byte counter: written by the body that streams, read by whoever reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct ByteCount(Arc<AtomicU64>);

impl ByteCount {
    /// Bytes counted so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// Counts the data bytes that stream through `inner` into a [`ByteCount`].
    pub(crate) struct CountIn<B> {
        #[pin]
        inner: B,
        count: ByteCount,
    }
}

impl<B> CountIn<B> {
    /// Wraps `inner`, counting into `count`.
    pub(crate) fn new(inner: B, count: ByteCount) -> Self {
        Self { inner, count }
    }
}

impl<B> HttpBody for CountIn<B>
where
    B: HttpBody<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.count.add(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts its data bytes and calls `on_end(bytes)` once: when the body ends
/// (its last frame is out, or it fails) or, if it never ends, when it is dropped.
pub(crate) struct OnEnd<F: FnOnce(u64)> {
    inner: Body,
    sent: u64,
    on_end: Option<F>,
}

impl<F: FnOnce(u64)> OnEnd<F> {
    /// Wraps `inner`; `on_end` gets the number of data bytes handed out.
    pub(crate) fn new(inner: Body, on_end: F) -> Self {
        Self {
            inner,
            sent: 0,
            on_end: Some(on_end),
        }
    }

    fn end(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.sent);
        }
    }
}

impl<F: FnOnce(u64)> Drop for OnEnd<F> {
    fn drop(&mut self) {
        self.end();
    }
}

impl<F: FnOnce(u64) + Unpin> HttpBody for OnEnd<F> {
    type Data = Bytes;
    type Error = super::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                // hyper stops polling a body that reports its end; report it now, not at drop.
                if this.inner.is_end_stream() {
                    this.end();
                }
            }
            Poll::Ready(Some(Err(_)) | None) => this.end(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::BodyExt;

    use super::*;
    use crate::http::body::{self, BoxError};

    /// An `on_end` that records each call.
    fn recorder() -> (Arc<Mutex<Vec<u64>>>, impl FnOnce(u64) + Unpin + Send + Sync) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        (calls, move |bytes| seen.lock().unwrap().push(bytes))
    }

    fn chunks(parts: &[&'static [u8]], fail: bool) -> Body {
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        if fail {
            frames.push(Err("upstream reset".into()));
        }
        body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn a_finished_body_reports_its_bytes_once() {
        let (calls, on_end) = recorder();
        let wrapped = OnEnd::new(chunks(&[b"hello ", b"world"], false), on_end);
        let collected = wrapped.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "hello world");
        assert_eq!(*calls.lock().unwrap(), [11], "reported once, after the end");
    }

    #[tokio::test]
    async fn a_full_body_reports_as_soon_as_its_last_frame_is_out() {
        let (calls, on_end) = recorder();
        let mut wrapped = OnEnd::new(body::full("abc"), on_end);
        let frame = wrapped.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().unwrap().as_ref(), b"abc");
        assert_eq!(
            *calls.lock().unwrap(),
            [3],
            "reported before any further poll"
        );
        drop(wrapped);
        assert_eq!(*calls.lock().unwrap(), [3], "and not again at drop");
    }

    #[tokio::test]
    async fn an_abandoned_or_failed_body_reports_what_went_out() {
        let (calls, on_end) = recorder();
        let mut wrapped = OnEnd::new(chunks(&[b"12345", b"678"], false), on_end);
        let _ = wrapped.frame().await;
        assert!(calls.lock().unwrap().is_empty(), "not ended yet");
        drop(wrapped);
        assert_eq!(
            *calls.lock().unwrap(),
            [5],
            "the client went away after 5 bytes"
        );

        let (calls, on_end) = recorder();
        let wrapped = OnEnd::new(chunks(&[b"1234"], true), on_end);
        assert!(wrapped.collect().await.is_err());
        assert_eq!(*calls.lock().unwrap(), [4]);

        let (calls, on_end) = recorder();
        drop(OnEnd::new(body::empty(), on_end));
        assert_eq!(
            *calls.lock().unwrap(),
            [0],
            "a body never polled still reports"
        );
    }

    #[tokio::test]
    async fn count_in_counts_every_data_byte() {
        let count = ByteCount::default();
        let body = CountIn::new(chunks(&[b"abc", b"defg"], false), count.clone());
        let _ = body.collect().await;
        assert_eq!(count.get(), 7);
    }
}
