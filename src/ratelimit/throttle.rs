//! One warning per [`LOG_INTERVAL`] from a noisy source (Redis failures, the key cap), and the
//! millisecond clock it and the Redis retry timer share.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Least time between two warnings from one source (Redis failures, key cap reached).
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Lets one log line through per [`LOG_INTERVAL`].
pub(crate) struct LogThrottle {
    /// Milliseconds since [`EPOCH`] before which nothing is logged.
    next: AtomicU64,
}

/// Time base of [`LogThrottle`] and the Redis backend's retry timer.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since [`EPOCH`].
pub(crate) fn millis_now() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl LogThrottle {
    /// A throttle that lets the first line through.
    pub(crate) const fn new() -> Self {
        Self {
            next: AtomicU64::new(0),
        }
    }

    /// `true` for at most one caller per [`LOG_INTERVAL`].
    pub(crate) fn ready(&self) -> bool {
        let now = millis_now();
        let next = self.next.load(Ordering::Relaxed);
        let interval = u64::try_from(LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}
