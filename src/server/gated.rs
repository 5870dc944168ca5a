//! A future polled only when it asked to be: [`Gated`].
//!
//! A connection's task waits on its hyper connection and, beside it, on the idle clock and the
//! drain and kill signals. `tokio::select!` polls every branch each time the task wakes, and the
//! task wakes for every read, write and upstream answer: each poll of a signal locks its
//! `Notify`'s waiter list and each poll of the clock re-registers its timer, twice or more per
//! request, for events that come once in the connection's life. Behind a [`Gated`] they are
//! polled only when one of their own wakers fired (BENCHMARKS.md, "Instruction counts").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// What the inner future's wakers share: whether one fired, and whom to wake then.
#[derive(Default)]
struct Gate {
    woken: AtomicBool,
    parent: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.parent.wake();
    }
}

pin_project_lite::pin_project! {
    /// Polls `inner` on its first poll and afterwards only once a waker it registered fired;
    /// any other poll costs an atomic swap and a waker registration.
    pub(super) struct Gated<F> {
        #[pin]
        inner: F,
        gate: Arc<Gate>,
    }
}

impl<F> Gated<F> {
    /// Gates `inner`; its first poll goes through.
    pub(super) fn new(inner: F) -> Self {
        let gate = Gate {
            woken: AtomicBool::new(true),
            parent: AtomicWaker::new(),
        };
        Self {
            inner,
            gate: Arc::new(gate),
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake between the two is not lost.
        this.gate.parent.register(cx.waker());
        if !this.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(this.gate.clone());
        this.inner.poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts its polls; pending until `open` is notified.
    async fn counted(polls: &AtomicUsize, open: &tokio::sync::Notify) -> &'static str {
        let notified = open.notified();
        tokio::pin!(notified);
        std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::SeqCst);
            notified.as_mut().poll(cx)
        })
        .await;
        "done"
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_when_its_waker_fired() {
        let polls = AtomicUsize::new(0);
        let open = tokio::sync::Notify::new();
        let gated = Gated::new(counted(&polls, &open));
        tokio::pin!(gated);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..5 {
            assert!(gated.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "polled once, then left alone"
        );
        open.notify_one();
        assert_eq!(gated.as_mut().poll(&mut cx), Poll::Ready("done"));
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_inner_wake_reaches_the_waiting_task() {
        let gated = Gated::new(tokio::time::sleep(Duration::from_millis(20)));
        let finished = tokio::time::timeout(Duration::from_secs(5), gated).await;
        assert!(
            finished.is_ok(),
            "the timer's wake reached the task through the gate"
        );
    }
}
