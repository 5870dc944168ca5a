//! GCRA parameters of one policy, shared by the local limiter (governor), the Redis script and
//! `[auth] failure_limit`: a leaf, so the limiters and the auth failure counter depend on it and
//! not on each other.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

use crate::config::RatePolicy;

/// governor quota for a policy: `burst` cells, one refilled every `per / count`.
pub(crate) fn quota(policy: &RatePolicy) -> Quota {
    let period = policy.rate.per / policy.rate.count.get();
    let burst = NonZeroU32::new(policy.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period.max(Duration::from_nanos(1))).map_or_else(
        || Quota::per_second(policy.rate.count),
        |q| q.allow_burst(burst),
    )
}

/// GCRA parameters shared by the local and the Redis limiter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gcra {
    /// Emission interval `T`: one request's weight.
    pub(super) interval: Duration,
    /// Bucket size.
    pub(super) burst: u32,
}

impl Gcra {
    /// The parameters of a governor quota.
    pub(super) fn of(quota: &Quota) -> Self {
        Self {
            interval: quota.replenish_interval(),
            burst: quota.burst_size().get(),
        }
    }

    /// Requests admitted at once when the TAT is `ahead` of now (governor's formula).
    pub(super) fn remaining(self, ahead: Duration) -> u32 {
        let interval = self.interval.as_nanos().max(1);
        let full = interval * u128::from(self.burst);
        let remaining = full.saturating_sub(ahead.as_nanos()) / interval;
        u32::try_from(remaining).unwrap_or(u32::MAX).min(self.burst)
    }
}
