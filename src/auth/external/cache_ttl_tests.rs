//! The decision cache's TTLs on tokio's paused clock: an allow lives exactly `cache_ttl`, a
//! 401/403 denial exactly `negative_cache_ttl`, and nothing else is cached; no network, no
//! sleeping. Decisions enter the cache the way a real check's do: through the leader of a call
//! (`SingleFlight::join` → `Leader::finish`) or [`ExternalAuth::remember`].

use super::*;

const TTL: Duration = Duration::from_secs(60);
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(1);

fn auth(cache_ttl: Duration, negative_cache_ttl: Duration) -> ExternalAuth {
    ExternalAuth::new(&ExternalSettings {
        // Never contacted: these tests only drive the cache.
        url: Uri::from_static("http://127.0.0.1:9/auth"),
        method: Method::GET,
        forward_headers: vec![HeaderName::from_static("x-token")],
        copy_headers: Vec::new(),
        timeout: Duration::from_secs(5),
        cache_ttl,
        negative_cache_ttl,
        cache_key: CacheKey::Credential,
    })
    .unwrap()
}

fn allow() -> ExternalDecision {
    super::tests::allow_decision()
}

fn deny(status: StatusCode) -> ExternalDecision {
    ExternalDecision::Deny(Arc::new(PassThrough {
        status,
        headers: Vec::new(),
        body: Bytes::new(),
    }))
}

/// Leads a call for `key` and finishes it with `decision`, as a real check does.
fn decide(auth: &ExternalAuth, key: Key, decision: &ExternalDecision) {
    match auth.flights.join(key) {
        Turn::Lead(leader) => leader.finish(decision, auth.ttl(decision)),
        Turn::Hit(_) => panic!("a live entry where none was expected"),
        Turn::Follow(_) => panic!("a call in flight where none was expected"),
    }
}

/// The cached decision for `key`, if live. A miss makes this check the leader; dropping it
/// retires the call without caching anything.
fn cached(auth: &ExternalAuth, key: Key) -> Option<ExternalDecision> {
    match auth.flights.join(key) {
        Turn::Hit(decision) => Some(decision),
        Turn::Lead(_) | Turn::Follow(_) => None,
    }
}

fn is_allow(decision: Option<ExternalDecision>) -> bool {
    matches!(decision, Some(ExternalDecision::Allow { .. }))
}

#[tokio::test(start_paused = true)]
async fn an_allow_lives_exactly_cache_ttl() {
    let auth = auth(TTL, NEGATIVE_TTL);
    decide(&auth, [1; 32], &allow());

    tokio::time::advance(TTL - TICK).await;
    assert!(is_allow(cached(&auth, [1; 32])), "live until the last tick");
    tokio::time::advance(TICK).await;
    assert!(cached(&auth, [1; 32]).is_none(), "gone at cache_ttl");
    assert!(
        cached(&auth, [2; 32]).is_none(),
        "another key was never cached"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_lives_exactly_negative_cache_ttl() {
    for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
        let auth = auth(TTL, NEGATIVE_TTL);
        decide(&auth, [1; 32], &deny(status));

        tokio::time::advance(NEGATIVE_TTL - TICK).await;
        assert!(
            matches!(cached(&auth, [1; 32]), Some(ExternalDecision::Deny(d)) if d.status == status),
            "{status}: live until the last tick"
        );
        tokio::time::advance(TICK).await;
        assert!(
            cached(&auth, [1; 32]).is_none(),
            "{status}: gone at negative_cache_ttl, long before cache_ttl"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limits_failures_and_odd_statuses_are_never_cached() {
    let auth = auth(TTL, NEGATIVE_TTL);
    let uncached = [
        deny(StatusCode::TOO_MANY_REQUESTS),
        ExternalDecision::Unavailable,
        ExternalDecision::Unexpected(302),
    ];
    for (index, decision) in uncached.iter().enumerate() {
        let key = [u8::try_from(index).unwrap(); 32];
        decide(&auth, key, decision);
        assert!(cached(&auth, key).is_none(), "{decision:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_zero_ttl_caches_nothing_of_its_kind() {
    let allows_only = auth(TTL, Duration::ZERO);
    decide(&allows_only, [1; 32], &deny(StatusCode::UNAUTHORIZED));
    assert!(cached(&allows_only, [1; 32]).is_none());
    decide(&allows_only, [2; 32], &allow());
    assert!(is_allow(cached(&allows_only, [2; 32])));

    let denials_only = auth(Duration::ZERO, NEGATIVE_TTL);
    decide(&denials_only, [1; 32], &allow());
    assert!(cached(&denials_only, [1; 32]).is_none());
}

#[tokio::test(start_paused = true)]
async fn an_allow_replaces_a_cached_refusal_with_its_own_ttl() {
    let auth = auth(TTL, NEGATIVE_TTL);
    decide(&auth, [1; 32], &deny(StatusCode::UNAUTHORIZED));
    tokio::time::advance(NEGATIVE_TTL - TICK).await;
    // The credential became valid: the next call's allow takes the key over.
    auth.remember([1; 32], &allow(), 0);
    tokio::time::advance(NEGATIVE_TTL).await;
    assert!(
        is_allow(cached(&auth, [1; 32])),
        "the allow, not the old denial's expiry, decides"
    );
    tokio::time::advance(TTL - NEGATIVE_TTL).await;
    assert!(
        cached(&auth, [1; 32]).is_none(),
        "and it ends at its own TTL"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_that_started_before_a_clear_does_not_refill_the_cache() {
    let auth = auth(TTL, NEGATIVE_TTL);
    let Turn::Lead(leader) = auth.flights.join([1; 32]) else {
        panic!("empty cache: this check leads");
    };
    auth.clear();
    leader.finish(&allow(), TTL);
    assert!(cached(&auth, [1; 32]).is_none());
    auth.remember([2; 32], &allow(), 0);
    assert!(
        cached(&auth, [2; 32]).is_none(),
        "remember with the old epoch is refused too"
    );
}
