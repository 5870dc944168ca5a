//! The local limiter: governor's GCRA [`RateLimiter`] over [`CappedStore`], a sharded map from
//! [`Key`] to the key's theoretical arrival time (TAT) with a hard cap on tracked keys.
//!
//! # Memory
//!
//! A tracked key costs one hash-table slot: a 24-byte [`Key`], an 8-byte TAT and a control byte,
//! at a load factor between 7/16 and 7/8, plus the identity's string when the key is an identity
//! (shared with the caller's `Arc<str>` while that lives). Measured resident memory (the
//! `#[ignore]`d test `memory_of_one_million_keys`, release build):
//! - 1,000,000 IPv4 keys: +67 MiB (70 B/key; the tables had just doubled);
//! - one policy at the default cap, 917,504 IPv4 keys: +36 MiB (40 B/key) — the most a policy
//!   holds, whatever is offered;
//! - 1,000,000 identity keys with 12-byte subjects held only by the limiter: +112 MiB (117 B/key).
//!
//! Keys are purged two ways, both exact: a key whose TAT is not after "now" behaves exactly like
//! a key never seen, so dropping it changes no decision.
//! - [`LocalLimiter::purge`] (the caller's timer) walks every shard, one lock at a time;
//! - a full shard purges itself on the request path when a new key arrives, at most once per
//!   [`INLINE_PURGE_INTERVAL`].
//!
//! # Past the cap
//!
//! The cap ([`MAX_TRACKED_KEYS`] by default) is enforced per shard (1/[`SHARDS`] of it each, so no
//! global counter is touched per request). When a new key lands in a shard that is still full
//! after its purge, the key is not tracked: its request is decided by the policy's single
//! *overflow bucket*, one GCRA state with the policy's own rate and burst shared by every
//! untracked key. A client spraying fresh keys (IPv6 addresses, forged identities) is therefore
//! limited as one group instead of bypassing the limit, at the price that a genuinely new client
//! arriving while the table is full shares that group's budget until a purge frees room. Keys
//! already tracked are unaffected. Each overflow decision is counted and logged (rate-limited).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use super::throttle::LogThrottle;

/// Default hard cap on keys tracked per policy: 64 shards × 14,336 keys, the most a
/// 16,384-bucket table holds at its 7/8 load factor. One more key per shard would double every
/// table; at this cap a policy tracking IP keys stays around 36 MiB (measured), so even several
/// policies under a key-spraying attack fit a sidecar's memory.
pub(crate) const MAX_TRACKED_KEYS: usize = SHARDS * 14_336;

/// Shards per store: enough that request threads rarely meet on one lock; a power of two.
pub(crate) const SHARDS: usize = 64;

/// Least time between two request-path purges of one full shard (a purge walks the shard).
pub(crate) const INLINE_PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// `purge` shrinks a shard's table when its capacity is this many times its length…
const SHRINK_RATIO: usize = 4;

/// …and the capacity is above this (small tables are not worth reallocating).
const SHRINK_MIN_CAPACITY: usize = 1024;

/// What a policy counts requests per. The variants keep identities, IPs and routes in separate
/// namespaces: an identity named `"192.0.2.1"` is not the IP 192.0.2.1.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// An authenticated identity's subject.
    Id(Arc<str>),
    /// A client IP (canonical: IPv4-mapped IPv6 addresses are IPv4).
    Ip(IpAddr),
    /// A route's path.
    Route(Arc<str>),
}

/// One GCRA decision, the same for the local and the Redis limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GcraDecision {
    /// Admitted; `remaining` more requests would be admitted right now.
    Allowed {
        /// Requests admitted at once after this one.
        remaining: u32,
    },
    /// Refused; the next request is admitted after `wait`.
    Denied {
        /// Time until the next conforming request.
        wait: Duration,
    },
}

/// A keyed GCRA limiter for one policy. `C` is the clock: the default clock in service, governor's
/// `FakeRelativeClock` in tests.
pub(crate) struct LocalLimiter<C: Clock> {
    limiter: RateLimiter<Key, CappedStore, C, StateInformationMiddleware>,
    /// Counted by the store; read by tests only (the store logs overflow itself).
    #[cfg(test)]
    overflowed: Arc<AtomicU64>,
}

impl<C: Clock> LocalLimiter<C> {
    /// A limiter for `quota` tracking at most about `max_keys` keys; `policy` names it in logs.
    pub(crate) fn new(quota: Quota, clock: C, max_keys: usize, policy: &str) -> Self {
        let overflowed = Arc::new(AtomicU64::new(0));
        let store = CappedStore::new(quota, max_keys, policy, Arc::clone(&overflowed));
        Self {
            limiter: RateLimiter::<Key, CappedStore, C, StateInformationMiddleware>::new(
                quota, store, clock,
            ),
            #[cfg(test)]
            overflowed,
        }
    }

    /// Takes one cell for `key`.
    pub(crate) fn check(&self, key: &Key) -> GcraDecision {
        match self.limiter.check_key(key) {
            Ok(snapshot) => GcraDecision::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => GcraDecision::Denied {
                wait: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }

    /// Drops keys indistinguishable from fresh ones and shrinks oversized tables.
    pub(crate) fn purge(&self) {
        self.limiter.retain_recent();
    }

    /// Keys tracked now.
    pub(crate) fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }

    /// Requests decided by the overflow bucket since this limiter was built.
    #[cfg(test)]
    pub(crate) fn overflow_decisions(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// One shard: key → TAT in nanoseconds since the limiter's start.
struct Shard {
    map: HashMap<Key, u64>,
    /// When the request path last purged this shard (same time base), if ever.
    last_inline_purge: Option<u64>,
}

impl Shard {
    /// Drops keys whose TAT is not after `now`, unless the shard was purged less than
    /// [`INLINE_PURGE_INTERVAL`] ago.
    fn purge_inline(&mut self, now: u64) {
        let interval = duration_nanos(INLINE_PURGE_INTERVAL);
        let due = self
            .last_inline_purge
            .is_none_or(|last| now.saturating_sub(last) >= interval);
        if due {
            self.map.retain(|_, tat| *tat > now);
            self.last_inline_purge = Some(now);
        }
    }
}

/// governor state store: [`SHARDS`] mutex-guarded maps, a cap per shard, and one overflow
/// bucket for keys past the cap (see the module doc).
pub(crate) struct CappedStore {
    shards: Box<[Mutex<Shard>]>,
    shard_cap: usize,
    /// Picks the shard; seeded apart from the maps' own hashers so a shard's keys still spread
    /// over its table. foldhash, not SipHash: a client who could steer its keys into one shard
    /// would only share a lock; the map inside keeps std's SipHash against collisions.
    pick: foldhash::fast::RandomState,
    /// The GCRA emission interval in nanoseconds: a fresh key's TAT after one cell is now + this.
    interval: u64,
    overflow: InMemoryState,
    overflowed: Arc<AtomicU64>,
    policy: Box<str>,
    overflow_log: LogThrottle,
}

impl CappedStore {
    fn new(quota: Quota, max_keys: usize, policy: &str, overflowed: Arc<AtomicU64>) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    last_inline_purge: None,
                })
            })
            .collect();
        Self {
            shards,
            shard_cap: max_keys.div_ceil(SHARDS),
            pick: foldhash::fast::RandomState::default(),
            interval: duration_nanos(quota.replenish_interval()).max(1),
            overflow: InMemoryState::default(),
            overflowed,
            policy: policy.into(),
            overflow_log: LogThrottle::new(),
        }
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, Shard> {
        let index = usize::try_from(self.pick.hash_one(key) % SHARDS as u64).unwrap_or(0);
        lock(&self.shards[index])
    }

    fn note_overflow(&self) {
        let total = self.overflowed.fetch_add(1, Ordering::Relaxed) + 1;
        if self.overflow_log.ready() {
            tracing::warn!(
                policy = %self.policy,
                cap = self.shard_cap * SHARDS,
                overflow_decisions = total,
                "rate limit key cap reached: new keys share the policy's overflow bucket"
            );
        }
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl StateStore for CappedStore {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut shard = self.shard(key);
        if let Some(tat) = shard.map.get_mut(key) {
            let (outcome, next) = f(Some(Nanos::from(*tat)))?;
            *tat = next.as_u64();
            return Ok(outcome);
        }
        // A fresh key: one cell always conforms, and its new TAT is now + interval.
        let (outcome, next) = f(None)?;
        let next = next.as_u64();
        if shard.map.len() >= self.shard_cap {
            shard.purge_inline(next.saturating_sub(self.interval));
        }
        if shard.map.len() < self.shard_cap {
            shard.map.insert(key.clone(), next);
            return Ok(outcome);
        }
        drop(shard);
        self.note_overflow();
        self.overflow.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<Key> for CappedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = drop_below.as_u64();
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.map.retain(|_, tat| *tat > drop_below);
            let capacity = shard.map.capacity();
            if capacity > SHRINK_MIN_CAPACITY && capacity > SHRINK_RATIO * shard.map.len() {
                shard.map.shrink_to_fit();
            }
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).map.len()).sum()
    }

    fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| lock(shard).map.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::num::NonZeroU32;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn quota(per_second: u32, burst: u32) -> Quota {
        Quota::per_second(NonZeroU32::new(per_second).unwrap())
            .allow_burst(NonZeroU32::new(burst).unwrap())
    }

    fn ip(n: u32) -> Key {
        Key::Ip(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn past_the_cap_new_keys_share_the_overflow_bucket() {
        let clock = FakeRelativeClock::default();
        // One key per shard at most; burst 2 per key and for the overflow bucket.
        let limiter = LocalLimiter::new(quota(1, 2), clock.clone(), SHARDS, "tiny");
        let mut n = 0;
        while limiter.overflow_decisions() == 0 {
            assert_eq!(
                limiter.check(&ip(n)),
                GcraDecision::Allowed { remaining: 1 }
            );
            n += 1;
            assert!(n < 10_000, "the cap is never reached");
        }
        assert!(limiter.tracked_keys() <= SHARDS);
        // The first overflowing key took one cell of the shared bucket; the next fresh key takes
        // the last one, and a third is refused: sprayed keys are limited as a group.
        let before = limiter.overflow_decisions();
        let mut decisions = Vec::new();
        for _ in 0..2 {
            // Find fresh keys that land in full shards (all shards fill up quickly).
            loop {
                n += 1;
                let decision = limiter.check(&ip(n));
                if limiter.overflow_decisions() > before + decisions.len() as u64 {
                    decisions.push(decision);
                    break;
                }
            }
        }
        assert_eq!(decisions[0], GcraDecision::Allowed { remaining: 0 });
        assert!(matches!(decisions[1], GcraDecision::Denied { .. }));
        // Tracked keys keep their own budgets.
        assert_eq!(
            limiter.check(&ip(0)),
            GcraDecision::Allowed { remaining: 0 }
        );
    }

    #[test]
    fn a_full_shard_purges_stale_keys_before_overflowing() {
        let clock = FakeRelativeClock::default();
        // 100 keys per shard; offering 20,000 fills every shard.
        let limiter = LocalLimiter::new(quota(1, 1), clock.clone(), SHARDS * 100, "small");
        for n in 0..20_000 {
            let _ = limiter.check(&ip(n));
        }
        let overflowed = limiter.overflow_decisions();
        assert!(overflowed > 0);
        assert_eq!(limiter.tracked_keys(), SHARDS * 100);
        // One second on, every key is stale and the last request-path purge is an interval old:
        // new keys are tracked, none overflows.
        clock.advance(INLINE_PURGE_INTERVAL.max(Duration::from_secs(1)));
        for n in 20_000..20_050 {
            assert_eq!(
                limiter.check(&ip(n)),
                GcraDecision::Allowed { remaining: 0 }
            );
        }
        assert_eq!(limiter.overflow_decisions(), overflowed);
    }

    #[test]
    fn purge_drops_only_stale_keys() {
        let clock = FakeRelativeClock::default();
        let limiter = LocalLimiter::new(quota(1, 5), clock.clone(), MAX_TRACKED_KEYS, "p");
        for n in 0..100 {
            let _ = limiter.check(&ip(n));
        }
        // Key 0 spends its whole burst: its TAT is 5 s ahead.
        for _ in 0..4 {
            let _ = limiter.check(&ip(0));
        }
        assert_eq!(limiter.tracked_keys(), 100);
        clock.advance(Duration::from_secs(3));
        limiter.purge();
        assert_eq!(limiter.tracked_keys(), 1, "only the busy key is remembered");
        assert!(matches!(
            limiter.check(&ip(0)),
            GcraDecision::Allowed { remaining: 2 }
        ));
    }

    /// RSS of one million distinct keys. Run alone, in release:
    /// `cargo test --release --lib ratelimit::local::tests::memory -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement: run alone with --ignored --nocapture"]
    fn memory_of_one_million_keys() {
        let ips = measure("1,000,000 IPv4 keys", usize::MAX, (0..1_000_000).map(ip));
        assert_eq!(ips.tracked_keys(), 1_000_000);
        // The most one policy holds: twice the cap offered, the shards fill up, the rest overflows.
        let offered = 2 * u32::try_from(MAX_TRACKED_KEYS).unwrap();
        let capped = measure(
            "a policy at the default cap (IPv4 keys)",
            MAX_TRACKED_KEYS,
            (0..offered).map(ip),
        );
        assert!(capped.tracked_keys() <= MAX_TRACKED_KEYS && capped.overflow_decisions() > 0);
        let ids = measure(
            "1,000,000 identity keys (12-byte subjects)",
            usize::MAX,
            (0..1_000_000u32).map(|n| Key::Id(Arc::from(format!("user-{n:07}")))),
        );
        assert_eq!(ids.tracked_keys(), 1_000_000);
        // Limiters stay alive to the end so each measurement gets fresh pages.
        drop((ips, capped, ids));
    }

    /// A fresh limiter tracking at most `cap` keys, fed `keys`: prints the RSS it grew by.
    fn measure(
        label: &str,
        cap: usize,
        keys: impl Iterator<Item = Key>,
    ) -> LocalLimiter<FakeRelativeClock> {
        let before = rss_bytes();
        let limiter = LocalLimiter::new(quota(100, 200), FakeRelativeClock::default(), cap, "m");
        for key in keys {
            let _ = limiter.check(&key);
        }
        let grown = rss_bytes().saturating_sub(before);
        report(label, limiter.tracked_keys(), grown);
        limiter
    }

    fn report(label: &str, keys: usize, bytes: usize) {
        println!(
            "{label}: {keys} keys tracked, RSS +{:.1} MiB ({} bytes per key)",
            bytes as f64 / (1024.0 * 1024.0),
            bytes / keys
        );
    }

    /// Resident set size from `/proc/self/statm` (pages × 4 KiB).
    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }
}
