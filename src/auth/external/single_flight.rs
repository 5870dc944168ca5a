//! Single flight: concurrent checks with the same key share one auth call, so a burst of identical
//! new requests costs the auth service one call. The decision cache and the calls in flight sit
//! under one short-held lock, so that "not cached" and "nobody is asking" are decided together.
//! What may be cached, and for how long, is decided in `external.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::cache::{Cache, Key};
use super::decision::ExternalDecision;

/// Extra time a follower waits beyond `timeout` for a leader that is not being polled.
const FOLLOW_GRACE: Duration = Duration::from_millis(250);

/// One in-flight auth call, as seen by the checks waiting for it.
pub(super) type Flight = watch::Receiver<Option<ExternalDecision>>;

/// The decision cache and the auth calls in flight, keyed alike.
#[derive(Default)]
pub(super) struct SingleFlight {
    state: Mutex<State>,
    coalesced: AtomicU64,
}

/// The cache and the calls in flight, under one short-held lock so that "not cached" and "nobody
/// is asking" are decided together.
#[derive(Default)]
struct State {
    cache: Cache,
    in_flight: HashMap<Key, Flight>,
    /// Bumped by every [`SingleFlight::clear`]: a call that started before it does not cache its
    /// answer after it.
    epoch: u64,
}

/// What [`SingleFlight::join`] found.
pub(super) enum Turn<'a> {
    /// A live cached decision.
    Hit(ExternalDecision),
    /// Nobody is asking: this check makes the call.
    Lead(Leader<'a>),
    /// Another check is asking: wait for its answer.
    Follow(Flight),
}

impl SingleFlight {
    /// Under one lock: a cached decision, or the call in flight to wait for, or leadership.
    pub(super) fn join(&self, key: Key) -> Turn<'_> {
        let mut state = self.lock();
        if let Some(decision) = state.cache.get(&key, Instant::now()) {
            return Turn::Hit(decision);
        }
        if let Some(flight) = state.in_flight.get(&key) {
            // A closed channel means its leader is gone; lead a new call in its place.
            if flight.has_changed().is_ok() {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
                return Turn::Follow(flight.clone());
            }
        }
        let (sender, flight) = watch::channel(None);
        state.in_flight.insert(key, flight);
        Turn::Lead(Leader {
            flights: self,
            key,
            epoch: state.epoch,
            sender,
            finished: false,
        })
    }

    /// Waits for the leader's decision, at most `timeout` plus a grace; `None` if the leader went
    /// away without one.
    pub(super) async fn follow(mut flight: Flight, timeout: Duration) -> Option<ExternalDecision> {
        let wait = timeout.saturating_add(FOLLOW_GRACE);
        match tokio::time::timeout(wait, flight.wait_for(Option::is_some)).await {
            Ok(Ok(decision)) => decision.clone(),
            Ok(Err(_leader_gone)) => None,
            Err(_elapsed) => {
                tracing::warn!("external auth call in flight did not finish in time");
                Some(ExternalDecision::Unavailable)
            }
        }
    }

    /// Caches `decision` for `ttl` (zero: not at all) if no [`clear`](Self::clear) happened since
    /// `epoch`.
    pub(super) fn remember(
        &self,
        key: Key,
        decision: &ExternalDecision,
        ttl: Duration,
        epoch: u64,
    ) {
        if ttl.is_zero() {
            return;
        }
        let mut state = self.lock();
        if state.epoch == epoch {
            state
                .cache
                .insert(key, decision.clone(), ttl, Instant::now());
        }
    }

    /// The current cache epoch, for a call made outside the single flight.
    pub(super) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Empties the decision cache and forgets the calls in flight (their answers are still
    /// delivered to the checks waiting for them, but not cached).
    pub(super) fn clear(&self) {
        let mut state = self.lock();
        state.cache.clear();
        state.in_flight.clear();
        state.epoch = state.epoch.wrapping_add(1);
    }

    /// Checks answered by waiting on another check's call instead of calling (for tests).
    #[cfg(test)]
    pub(super) fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// Decisions in the cache, live or not yet evicted.
    #[cfg(test)]
    pub(super) fn cached(&self) -> usize {
        self.lock().cache.len()
    }

    /// Calls in flight.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The check that makes the auth call for a key. Dropping it without [`Leader::finish`] (the
/// check was cancelled or panicked) removes its in-flight entry and closes the channel, so its
/// followers stop waiting and try again.
pub(super) struct Leader<'a> {
    flights: &'a SingleFlight,
    key: Key,
    /// The cache epoch when the call started.
    epoch: u64,
    sender: watch::Sender<Option<ExternalDecision>>,
    finished: bool,
}

impl Leader<'_> {
    /// Caches the decision for `ttl` (unless zero, or the cache was cleared meanwhile), retires
    /// the in-flight entry (in one critical section, so a newcomer sees one or the other) and
    /// wakes the followers.
    pub(super) fn finish(mut self, decision: &ExternalDecision, ttl: Duration) {
        {
            let mut state = self.flights.lock();
            if !ttl.is_zero() && state.epoch == self.epoch {
                state
                    .cache
                    .insert(self.key, decision.clone(), ttl, Instant::now());
            }
            self.retire(&mut state);
        }
        self.finished = true;
        self.sender.send_replace(Some(decision.clone()));
    }

    /// Removes this leader's in-flight entry (and only this leader's).
    fn retire(&self, state: &mut State) {
        let ours = state
            .in_flight
            .get(&self.key)
            .is_some_and(|flight| flight.same_channel(&self.sender.subscribe()));
        if ours {
            state.in_flight.remove(&self.key);
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.flights.lock();
            self.retire(&mut state);
        }
    }
}
