//! The decision cache's own rules: bounded maps, expiry before eviction, allows apart from
//! denials.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::time::Instant;

use super::super::tests::allow_decision;
use super::{Bounded, Cache, Key, MAX_DENIALS};
use crate::auth::external::ExternalDecision;
use crate::error::PassThrough;

fn key(i: usize) -> Key {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&(i as u64).to_be_bytes());
    key
}

fn deny_decision() -> ExternalDecision {
    ExternalDecision::Deny(Arc::new(PassThrough {
        status: StatusCode::UNAUTHORIZED,
        headers: Vec::new(),
        body: Bytes::new(),
    }))
}

#[test]
fn bounded_map_drops_expired_entries_then_the_oldest() {
    let now = Instant::now();
    let mut map = Bounded::new(4);
    let ttl = Duration::from_secs(60);
    for i in 0..4 {
        map.insert(
            key(i),
            deny_decision(),
            ttl,
            now + Duration::from_secs(i as u64),
        );
    }
    assert_eq!(map.entries.len(), 4);
    // Full of live entries: the oldest goes.
    map.insert(key(4), deny_decision(), ttl, now + Duration::from_secs(4));
    assert_eq!(map.entries.len(), 4);
    let at = now + Duration::from_secs(5);
    assert!(map.get(&key(0), at).is_none());
    for i in 1..=4 {
        assert!(map.get(&key(i), at).is_some(), "{i}");
    }
    // Later, expired entries go before any live one.
    let later = now + Duration::from_secs(62);
    map.insert(key(5), deny_decision(), ttl, later);
    assert_eq!(map.entries.len(), 3, "keys 1 and 2 expired");
    assert!(map.get(&key(3), later).is_some());
    assert!(map.get(&key(5), later).is_some());
    // Storing a key again many times keeps the order queue bounded.
    for _ in 0..100 {
        map.insert(key(5), deny_decision(), ttl, later);
    }
    assert!(map.order.len() <= 8, "{}", map.order.len());
    assert!(map.get(&key(5), later).is_some());
    assert!(map.get(&key(4), later).is_some());
    // Expired entries are not served.
    assert!(map.get(&key(5), later + ttl).is_none());
}

#[test]
fn a_flood_of_denials_never_evicts_an_allow() {
    let now = Instant::now();
    let mut cache = Cache::default();
    let ttl = Duration::from_secs(60);
    cache.insert(key(usize::MAX), allow_decision(), ttl, now);
    for i in 0..MAX_DENIALS * 2 + 1 {
        cache.insert(key(i), deny_decision(), ttl, now);
    }
    assert!(matches!(
        cache.get(&key(usize::MAX), now),
        Some(ExternalDecision::Allow { .. })
    ));
    assert_eq!(cache.len(), MAX_DENIALS + 1);
    assert!(cache.get(&key(0), now).is_none(), "the oldest denials went");
    assert!(cache.get(&key(MAX_DENIALS * 2), now).is_some());
    cache.clear();
    assert_eq!(cache.len(), 0);
}
