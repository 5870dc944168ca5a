//! The decision cache (SPEC §8.2): allows and denials in separate bounded maps, each evicting its
//! oldest entry when full. What may be cached, and for how long, is decided in `external.rs`; the
//! calls in flight are in `single_flight.rs`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

// The cache's clock is tokio's: the same as `std::time::Instant` in the gateway, and one that
// tests can pause and advance to see a TTL end (`external/cache_ttl_tests.rs`).
use tokio::time::Instant;

use super::decision::ExternalDecision;

/// Most cached allows; past it expired entries go, then the oldest.
const MAX_ALLOWS: usize = 10_000;
/// Most cached denials, kept apart from the allows so a flood of unknown credentials only ever
/// evicts other denials.
const MAX_DENIALS: usize = 10_000;

/// The cache key: SHA-256 over what the decision may be reused for (see `cache_key`).
pub(super) type Key = [u8; 32];

/// A cached decision and when it stops counting.
struct Entry {
    decision: ExternalDecision,
    expires: Instant,
}

/// The decision cache: allows and denials apart, each bounded on its own, so a flood of unknown
/// credentials (denials) can only evict other denials, never a live allow.
pub(super) struct Cache {
    allows: Bounded,
    denials: Bounded,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            allows: Bounded::new(MAX_ALLOWS),
            denials: Bounded::new(MAX_DENIALS),
        }
    }
}

impl Cache {
    /// The live decision for `key`.
    pub(super) fn get(&mut self, key: &Key, now: Instant) -> Option<ExternalDecision> {
        self.allows
            .get(key, now)
            .or_else(|| self.denials.get(key, now))
    }

    /// Stores `decision` for `ttl` in the map of its kind.
    pub(super) fn insert(
        &mut self,
        key: Key,
        decision: ExternalDecision,
        ttl: Duration,
        now: Instant,
    ) {
        match decision {
            ExternalDecision::Allow { .. } => {
                self.denials.remove(&key);
                self.allows.insert(key, decision, ttl, now);
            }
            _ => {
                self.allows.remove(&key);
                self.denials.insert(key, decision, ttl, now);
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.allows.clear();
        self.denials.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.allows.entries.len() + self.denials.entries.len()
    }
}

/// A map of at most `capacity` entries that evicts the oldest first. Its entries share one TTL,
/// so insertion order is expiry order: the front of `order` is both the next to expire and the
/// oldest. `order` may hold stale pairs (a key removed or stored again); a pair counts only while
/// it matches the map's entry.
struct Bounded {
    entries: HashMap<Key, Entry>,
    order: VecDeque<(Key, Instant)>,
    capacity: usize,
}

impl Bounded {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The live decision for `key`; an expired one is dropped.
    fn get(&mut self, key: &Key, now: Instant) -> Option<ExternalDecision> {
        let entry = self.entries.get(key)?;
        if entry.expires > now {
            return Some(entry.decision.clone());
        }
        self.entries.remove(key);
        None
    }

    /// Stores `decision` for `ttl`: expired entries go first, then, while full, the oldest.
    fn insert(&mut self, key: Key, decision: ExternalDecision, ttl: Duration, now: Instant) {
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        self.pop_while(|_, at| at <= now);
        if !self.entries.contains_key(&key) {
            let capacity = self.capacity;
            let mut evicted = 0usize;
            self.pop_while(|entries, _| {
                entries.len() >= capacity && {
                    evicted += 1;
                    true
                }
            });
            if evicted > 0 {
                tracing::debug!(evicted, "external auth decision cache full; oldest evicted");
            }
        }
        self.entries.insert(key, Entry { decision, expires });
        self.order.push_back((key, expires));
        if self.order.len() > self.capacity.saturating_mul(2) {
            self.compact();
        }
    }

    fn remove(&mut self, key: &Key) {
        self.entries.remove(key);
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// Pops the front of `order` (dropping its entry if the pair is current) while `pop` says so.
    fn pop_while(&mut self, mut pop: impl FnMut(&HashMap<Key, Entry>, Instant) -> bool) {
        while let Some(&(key, at)) = self.order.front() {
            if !pop(&self.entries, at) {
                return;
            }
            self.order.pop_front();
            if self.entries.get(&key).is_some_and(|e| e.expires == at) {
                self.entries.remove(&key);
            }
        }
    }

    /// Rebuilds `order` from the live entries, dropping stale pairs.
    fn compact(&mut self) {
        let mut order: Vec<(Key, Instant)> = self
            .entries
            .iter()
            .map(|(key, entry)| (*key, entry.expires))
            .collect();
        order.sort_by_key(|(_, at)| *at);
        self.order = order.into();
    }
}

#[cfg(test)]
mod tests;
