//! Rate limiting: `[rate_limits.NAME]` policies (SPEC §2), decided per request by GCRA, locally
//! with governor or shared by every replica through Redis (`[rate_limits.backend]`).
//!
//! # Semantics
//!
//! A policy admits `rate` requests per period with a bucket of `burst` (the most admitted at
//! once, as governor and Envoy define it): GCRA with emission interval `T = per / count` and
//! tolerance `τ = T × (burst − 1)`. Requests are counted per key: the identity's subject (the
//! client IP when anonymous — the two never collide), the client IP, or the route. IPv4-mapped
//! IPv6 addresses count as their IPv4 address. Local limiters are bounded: see `local.rs` for the
//! cap on tracked keys ([`MAX_TRACKED_KEYS`]), what happens past it, and measured memory.
//!
//! # Response fields
//!
//! Follows draft-ietf-httpapi-ratelimit-headers-11 (May 2026). -10 has the same syntax, and its
//! `t` ("seconds until additional quota is made available") is the same value as reported here.
//! Both fields are structured-field Lists whose item is the policy name as an sf-string.
//! - `RateLimit-Policy: "NAME";q=Q;w=W` — `W` is the time a drained bucket takes to refill, in
//!   whole seconds rounded up (≥ 1), and `Q` the requests the rate admits in `W`; so `Q/W` is the
//!   configured rate (rounded down) and `Q ≥ burst` (`100/s` with burst 200 → `q=200;w=2`).
//! - `RateLimit: "NAME";r=R;t=S` — `R` more requests would be admitted at once, and `S` is the
//!   draft's effective window: the whole seconds (rounded up) within which no more than `R` can
//!   be used, i.e. until the next request's worth drips back. For an admitted request that is
//!   within one emission interval, and `S = ⌈T⌉` is reported (governor gives the remaining burst,
//!   not the TAT; the Redis path reports the same for identical fields); `100/s` → `t=1`, `6/min`
//!   → `t=10`. Refused (429): `r=0` and `t` = the `Retry-After` value, so Retry-After never
//!   points before the end of the effective window (§6 of the draft).
//!
//! `Retry-After` is the wait until the next conforming request in whole seconds, rounded up, ≥ 1.
//!
//! # Shared limits and failures
//!
//! With `[rate_limits.backend]` every decision is one Lua script call in Redis (`redis.rs`); when
//! Redis fails or is slower than `timeout`, `on_error` decides: this replica's local limiter
//! (`local`), admit (`allow`, with `RateLimit` from the local limiter as a hint), or
//! [`RateRefusal::Unavailable`] (`deny`). See `redis.rs` for keys, reconnection and the error counter.
//!
//! # Reloads
//!
//! [`RateLimits::build`] keeps the limiter of every policy whose name and settings are unchanged
//! (the same `Arc`), so a reload never hands clients a fresh burst; a changed policy starts empty.
//! The Redis connection and its error counter are kept while the URL is unchanged.

mod gcra;
mod headers;
mod local;
mod redis;
mod throttle;

use std::collections::{BTreeMap, HashSet};

// foldhash for the policies by name: the names come from the config, and the map is read on every
// request (BENCHMARKS.md, "Instruction counts").
use foldhash::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};

use crate::config::collect::KeyError;
use crate::config::{OnError, RateBackend, RateKey, RatePolicy};

use self::gcra::Gcra;
use self::headers::PolicyHeaders;
use self::local::{GcraDecision, Key, LocalLimiter};
use self::redis::RedisBackend;
use self::throttle::LogThrottle;

pub(crate) use self::gcra::quota;
pub(crate) use self::headers::RateHeaders;
pub(crate) use self::local::MAX_TRACKED_KEYS;

/// Most distinct routes remembered per `key = "route"` policy; past it, further routes share one
/// budget. Routes come from the configuration, so real tables stay far below this.
pub(crate) const MAX_ROUTE_KEYS: usize = 10_000;

/// The rate limiters of one runtime: one per policy, plus the optional Redis backend.
///
/// `C` is the clock of the local limiters; only tests use another than the default.
pub struct RateLimits<C: Clock = DefaultClock> {
    policies: HashMap<String, Arc<Policy<C>>>,
    redis: Option<RedisBackend>,
    log: LogThrottle,
}

/// Who is asking, as the request pipeline knows it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The authenticated identity's subject, `None` when anonymous.
    pub identity: Option<&'a Arc<str>>,
    /// The client IP under the trusted-proxy rule.
    pub client_ip: IpAddr,
    /// The matched route's configured path (a bounded set, not the request path).
    pub route: &'a str,
}

/// An admitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// `RateLimit-Policy` and `RateLimit` to add to the response.
    pub(crate) headers: RateHeaders,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateRefusal {
    /// Over the limit: 429 `rate limit exceeded` with `Retry-After` and the headers.
    Exceeded {
        /// `Retry-After` in whole seconds, rounded up, ≥ 1.
        retry_after_secs: u64,
        /// `RateLimit-Policy` and `RateLimit` (`r=0`).
        headers: RateHeaders,
    },
    /// Redis down or slow with `on_error = "deny"`: 503 `rate limiter unavailable`,
    /// `Retry-After: 1`.
    Unavailable,
}

/// One policy's settings, limiter and precomputed header parts.
struct Policy<C: Clock> {
    settings: RatePolicy,
    gcra: Gcra,
    local: LocalLimiter<C>,
    headers: PolicyHeaders,
    /// `gatehouse:rl:{escaped name}:`
    redis_prefix: Box<str>,
    routes: RouteKeys,
}

impl RateLimits {
    /// Builds one limiter per policy. `previous`: the runtime being replaced — a policy whose
    /// name and settings are unchanged keeps its limiter state (the same `Arc`), so a reload
    /// never hands clients a fresh burst. Spawns nothing and does no I/O: the Redis connection
    /// manager is created on the first check that needs it, so startup never waits for Redis.
    ///
    /// # Errors
    /// An invalid Redis URL (or `rediss://`, which this build does not support).
    pub fn build(
        policies: &BTreeMap<String, RatePolicy>,
        backend: Option<&RateBackend>,
        previous: Option<&RateLimits>,
    ) -> Result<Self, KeyError> {
        Self::build_with(
            policies,
            backend,
            previous,
            &DefaultClock::default(),
            MAX_TRACKED_KEYS,
        )
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// [`RateLimits::build`] with a clock and a key cap of the caller's choosing (tests).
    pub(crate) fn build_with(
        policies: &BTreeMap<String, RatePolicy>,
        backend: Option<&RateBackend>,
        previous: Option<&Self>,
        clock: &C,
        max_keys: usize,
    ) -> Result<Self, KeyError> {
        let previous_redis = previous.and_then(|p| p.redis.as_ref());
        let redis = backend
            .map(|backend| RedisBackend::new(backend, previous_redis))
            .transpose()?;
        let policies = policies
            .iter()
            .map(|(name, settings)| {
                let kept = previous
                    .and_then(|p| p.policies.get(name))
                    .filter(|policy| policy.settings == *settings);
                let policy = kept.map_or_else(
                    || Arc::new(Policy::new(name, settings, clock.clone(), max_keys)),
                    Arc::clone,
                );
                (name.clone(), policy)
            })
            .collect();
        Ok(Self {
            policies,
            redis,
            log: LogThrottle::new(),
        })
    }
}

impl<C: Clock> RateLimits<C> {
    /// Decides one request for policy `name`. Routes without a policy never call this.
    ///
    /// # Errors
    /// [`RateRefusal::Exceeded`] over the limit; [`RateRefusal::Unavailable`] when Redis cannot decide
    /// and `on_error = "deny"`, or (a wiring bug) when no policy is named `name`.
    pub async fn check(&self, name: &str, subject: &Subject<'_>) -> Result<Allowed, RateRefusal> {
        let Some(policy) = self.policies.get(name) else {
            return Err(self.unknown_policy(name));
        };
        let key = policy.key(subject);
        let Some(redis) = &self.redis else {
            return policy.respond(policy.local.check(&key));
        };
        // Boxed: only the Redis backend awaits; the local limiter's callers keep a small future.
        match Box::pin(redis.decide(&policy.redis_key(&key), policy.gcra)).await {
            Some(decision) => policy.respond(decision),
            None => match redis.on_error() {
                OnError::Local => policy.respond(policy.local.check(&key)),
                OnError::Allow => Ok(policy.admit(policy.local.check(&key))),
                OnError::Deny => Err(RateRefusal::Unavailable),
            },
        }
    }

    /// Forgets keys whose state is indistinguishable from a fresh key's (no decision changes).
    /// Call from a timer every few seconds; it walks every table one shard lock at a time.
    pub fn purge(&self) {
        for policy in self.policies.values() {
            policy.local.purge();
        }
    }

    /// Checks that Redis could not decide (failed, timed out, or skipped while the backend is
    /// marked down) since the backend was configured; 0 without a backend.
    pub fn redis_errors(&self) -> u64 {
        self.redis.as_ref().map_or(0, RedisBackend::errors)
    }

    /// Keys tracked now by the local limiters of all policies.
    pub fn tracked_keys(&self) -> usize {
        self.policies.values().map(|p| p.local.tracked_keys()).sum()
    }

    fn unknown_policy(&self, name: &str) -> RateRefusal {
        if self.log.ready() {
            tracing::error!(policy = name, "rate limit policy not configured; refusing");
        }
        RateRefusal::Unavailable
    }
}

impl<C: Clock> fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits")
            .field("policies", &self.policies.keys().collect::<Vec<_>>())
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Policy<C> {
    fn new(name: &str, settings: &RatePolicy, clock: C, max_keys: usize) -> Self {
        let quota = quota(settings);
        Self {
            settings: settings.clone(),
            gcra: Gcra::of(&quota),
            local: LocalLimiter::new(quota, clock, max_keys, name),
            headers: PolicyHeaders::new(name, settings),
            redis_prefix: redis::key_prefix(name).into(),
            routes: RouteKeys::default(),
        }
    }

    fn key(&self, subject: &Subject<'_>) -> Key {
        let ip = || Key::Ip(subject.client_ip.to_canonical());
        match self.settings.key {
            RateKey::Identity => subject
                .identity
                .map_or_else(ip, |id| Key::Id(Arc::clone(id))),
            RateKey::Ip => ip(),
            RateKey::Route => Key::Route(self.routes.intern(subject.route)),
        }
    }

    fn redis_key(&self, key: &Key) -> String {
        redis::bucket_key(&self.redis_prefix, key)
    }

    fn respond(&self, decision: GcraDecision) -> Result<Allowed, RateRefusal> {
        match decision {
            GcraDecision::Allowed { remaining } => Ok(self.allowed(remaining)),
            GcraDecision::Denied { wait } => {
                let retry_after_secs = ceil_secs(wait).max(1);
                Err(RateRefusal::Exceeded {
                    retry_after_secs,
                    headers: self.headers.fields(0, retry_after_secs),
                })
            }
        }
    }

    /// Admits whatever `decision` says (`on_error = "allow"`), keeping its fields as a hint.
    fn admit(&self, decision: GcraDecision) -> Allowed {
        match self.respond(decision) {
            Ok(allowed) => allowed,
            Err(RateRefusal::Exceeded { headers, .. }) => Allowed { headers },
            Err(RateRefusal::Unavailable) => self.allowed(0),
        }
    }

    fn allowed(&self, remaining: u32) -> Allowed {
        let window = ceil_secs(self.gcra.interval).max(1);
        Allowed {
            headers: self.headers.fields(remaining, window),
        }
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Interned route paths of one `key = "route"` policy, so a check clones an `Arc` instead of
/// allocating the path.
struct RouteKeys {
    known: RwLock<HashSet<Arc<str>>>,
    /// Shared by routes past [`MAX_ROUTE_KEYS`]; configured paths start with `/`, so it
    /// collides with none.
    other: Arc<str>,
}

impl Default for RouteKeys {
    fn default() -> Self {
        Self {
            known: RwLock::new(HashSet::new()),
            other: Arc::from("*"),
        }
    }
}

impl RouteKeys {
    fn intern(&self, route: &str) -> Arc<str> {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = known.get(route) {
            return Arc::clone(key);
        }
        drop(known);
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = known.get(route) {
            return Arc::clone(key);
        }
        if known.len() >= MAX_ROUTE_KEYS {
            return Arc::clone(&self.other);
        }
        let key: Arc<str> = Arc::from(route);
        known.insert(Arc::clone(&key));
        key
    }
}

#[cfg(test)]
mod tests;
