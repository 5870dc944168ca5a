//! `[auth] failure_limit`: failed credential attempts per client IP. Each failed attempt takes a
//! cell from the IP's GCRA bucket (governor); once the bucket is empty the IP is blocked — every
//! credential attempt from it, valid or not, gets 429 `too many failed attempts` — until the
//! bucket would admit again. Blocking valid attempts too is what makes guessing pointless: a
//! guesser learns nothing while blocked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, RateLimiter};

use crate::config::RatePolicy;
use crate::error::GatewayError;
use crate::ratelimit::quota;

/// Most IPs remembered as blocked; beyond it expired entries are purged, then the oldest dropped.
const MAX_BLOCKED: usize = 100_000;

/// Per-IP failed-attempt limiter.
pub struct FailureLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// Fast path: no lock while nobody is blocked.
    any_blocked: AtomicBool,
}

impl std::fmt::Debug for FailureLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimit").finish_non_exhaustive()
    }
}

impl FailureLimit {
    /// A limiter for `policy`.
    pub fn new(policy: &RatePolicy) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota(policy)),
            blocked: Mutex::new(HashMap::new()),
            any_blocked: AtomicBool::new(false),
        }
    }

    /// 429 if `ip` is blocked now.
    ///
    /// # Errors
    /// [`GatewayError::TooManyFailures`] with the seconds until the block ends.
    pub fn check(&self, ip: IpAddr) -> Result<(), GatewayError> {
        if !self.any_blocked.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match blocked.get(&ip) {
            Some(until) if *until > now => Err(too_many(*until - now)),
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
    pub fn record_failure(&self, ip: IpAddr) -> Option<GatewayError> {
        let not_until = self.limiter.check_key(&ip).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let until = Instant::now() + wait;
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.len() >= MAX_BLOCKED {
            let now = Instant::now();
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
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    use crate::config::{Rate, RateKey};

    #[test]
    fn burst_of_failures_then_blocked_even_for_valid_attempts() {
        let policy = RatePolicy {
            key: RateKey::Ip,
            rate: Rate {
                count: NonZeroU32::new(1).unwrap(),
                per: Duration::from_secs(60),
            },
            burst: 3,
        };
        let limit = FailureLimit::new(&policy);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limit.record_failure(ip).is_none());
        }
        let error = limit.record_failure(ip).expect("fourth failure is limited");
        assert_eq!(error.to_string(), "too many failed attempts");
        assert!(
            matches!(limit.check(ip), Err(GatewayError::TooManyFailures { retry_after_secs }) if (1..=60).contains(&retry_after_secs))
        );
        assert!(
            limit.check("192.0.2.2".parse().unwrap()).is_ok(),
            "other IPs are unaffected"
        );
    }
}
