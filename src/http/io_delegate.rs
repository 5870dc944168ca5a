//! `AsyncWrite` forwarding for the connection IO wrappers ([`super::h2_trailers::TrailerGuard`],
//! [`super::head_scan::ScanIo`], [`super::idle::IdleTimeout`]). Each wrapper does its own work on
//! one side and passes the rest straight to its pinned `inner` field; these macros write that
//! pass-through once, so the wrappers keep only the logic that is theirs.
//!
//! Macros, not a generic wrapper type: each wrapper is a `pin_project_lite` struct whose other
//! fields the forwarding must leave alone, and a trait method cannot be inherited from a helper.
//! `is_write_vectored`/`poll_write_vectored` are always forwarded, never left to the trait's
//! defaults: hyper writes a response head and body with one `writev` only when the IO says it
//! can, and the default answer is "no" (a copy into one buffer per write).

/// Implements `tokio::io::AsyncWrite` for the pin-projected wrapper `$wrapper<T>` by forwarding
/// every method to its `#[pin]` field `$field`.
macro_rules! forward_async_write {
    ($wrapper:ident, $field:ident) => {
        impl<T: ::tokio::io::AsyncWrite> ::tokio::io::AsyncWrite for $wrapper<T> {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                data: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::tokio::io::AsyncWrite::poll_write(self.project().$field, cx, data)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::tokio::io::AsyncWrite::poll_write_vectored(self.project().$field, cx, bufs)
            }

            $crate::http::io_delegate::forward_write_control!($field);
        }
    };
}

/// Inside an `impl AsyncWrite` whose data methods do work of their own: forwards the methods
/// that move no data (`is_write_vectored`, `poll_flush`, `poll_shutdown`) to the `#[pin]` field
/// `$field`.
macro_rules! forward_write_control {
    ($field:ident) => {
        fn is_write_vectored(&self) -> bool {
            ::tokio::io::AsyncWrite::is_write_vectored(&self.$field)
        }

        fn poll_flush(
            self: ::std::pin::Pin<&mut Self>,
            cx: &mut ::std::task::Context<'_>,
        ) -> ::std::task::Poll<::std::io::Result<()>> {
            ::tokio::io::AsyncWrite::poll_flush(self.project().$field, cx)
        }

        fn poll_shutdown(
            self: ::std::pin::Pin<&mut Self>,
            cx: &mut ::std::task::Context<'_>,
        ) -> ::std::task::Poll<::std::io::Result<()>> {
            ::tokio::io::AsyncWrite::poll_shutdown(self.project().$field, cx)
        }
    };
}

pub(crate) use {forward_async_write, forward_write_control};

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncWrite, AsyncWriteExt};

    /// An IO that records what reached it and says it can write vectored.
    #[derive(Default)]
    struct Recorder {
        written: Vec<u8>,
        vectored_calls: usize,
        flushed: bool,
        shut: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.written.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.vectored_calls += 1;
            let mut n = 0;
            for buf in bufs {
                self.written.extend_from_slice(buf);
                n += buf.len();
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.flushed = true;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    pin_project_lite::pin_project! {
        struct Wrapper<T> {
            #[pin]
            inner: T,
        }
    }

    forward_async_write!(Wrapper, inner);

    #[tokio::test]
    async fn every_write_method_reaches_the_inner_io() {
        let mut wrapper = Wrapper {
            inner: Recorder::default(),
        };
        assert!(
            wrapper.is_write_vectored(),
            "vectored writes stay available"
        );
        wrapper.write_all(b"head").await.unwrap();
        let bufs = [IoSlice::new(b" and "), IoSlice::new(b"body")];
        let n = wrapper.write_vectored(&bufs).await.unwrap();
        assert_eq!(n, 9);
        wrapper.flush().await.unwrap();
        assert!(!wrapper.inner.shut, "flush is not shutdown");
        wrapper.shutdown().await.unwrap();
        let inner = &wrapper.inner;
        assert_eq!(inner.written, b"head and body");
        assert_eq!(inner.vectored_calls, 1, "not split into single writes");
        assert!(inner.flushed && inner.shut);
    }
}
