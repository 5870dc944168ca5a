//! `[auth] failure_limit`: failed credential attempts per client IP. Each failed attempt takes a
//! cell from the IP's GCRA bucket (governor); once the bucket is empty the IP is blocked — every
//! credential attempt from it, valid or not, gets 429 `too many failed attempts` — until the
//! bucket would admit again. Blocking valid attempts too is what makes guessing pointless: a
//! guesser learns nothing while blocked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock, Reference as _};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;

use crate::config::RatePolicy;
use crate::error::GatewayError;
use crate::ratelimit::quota;

/// Most IPs remembered as blocked; beyond it expired entries are purged, then the oldest dropped.
const MAX_BLOCKED: usize = 100_000;

/// Per-IP failed-attempt limiter. `C` is its clock: the default one, or governor's
/// `FakeRelativeClock` in tests.
pub(crate) struct FailureLimit<C: Clock = DefaultClock> {
    limiter: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// When each blocked IP's block ends, on `clock`.
    blocked: Mutex<HashMap<IpAddr, C::Instant>>,
    /// Fast path: no lock while nobody is blocked.
    any_blocked: AtomicBool,
}

impl<C: Clock> std::fmt::Debug for FailureLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimit").finish_non_exhaustive()
    }
}

impl FailureLimit {
    /// A limiter for `policy`.
    pub(crate) fn new(policy: &RatePolicy) -> Self {
        Self::with_clock(policy, DefaultClock::default())
    }
}

impl<C: Clock + Clone> FailureLimit<C> {
    /// A limiter for `policy` on `clock`.
    pub(crate) fn with_clock(policy: &RatePolicy, clock: C) -> Self {
        Self {
            limiter: RateLimiter::hashmap_with_clock(quota(policy), clock.clone()),
            clock,
            blocked: Mutex::new(HashMap::new()),
            any_blocked: AtomicBool::new(false),
        }
    }
}

impl<C: Clock> FailureLimit<C> {
    /// 429 if `ip` is blocked now.
    ///
    /// # Errors
    /// [`GatewayError::TooManyFailures`] with the seconds until the block ends.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), GatewayError> {
        if !self.any_blocked.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        match blocked.get(&ip) {
            Some(until) if *until > now => Err(too_many(until.duration_since(now).into())),
            Some(_) => {
                blocked.remove(&ip);
                self.any_blocked
                    .store(!blocked.is_empty(), Ordering::Relaxed);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Records a failed attempt; returns the 429 to answer instead of 401 once the budget is spent.
    pub(crate) fn record_failure(&self, ip: IpAddr) -> Option<GatewayError> {
        let not_until = self.limiter.check_key(&ip).err()?;
        let now = self.clock.now();
        let wait = not_until.wait_time_from(now);
        let until = now + Nanos::from(wait);
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.len() >= MAX_BLOCKED {
            blocked.retain(|_, until| *until > now);
            self.limiter.retain_recent();
        }
        if blocked.len() < MAX_BLOCKED {
            blocked.insert(ip, until);
        }
        self.any_blocked.store(true, Ordering::Relaxed);
        Some(too_many(wait))
    }
}

fn too_many(wait: Duration) -> GatewayError {
    GatewayError::TooManyFailures {
        retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    }
}

#[cfg(test)]
mod tests;
