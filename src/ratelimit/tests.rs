//! Local limiter tests through the public API, time driven by governor's `FakeRelativeClock`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::FakeRelativeClock;

use super::*;
use crate::config::Rate;

/// `count` per `per_secs` with `burst`, keyed by `key`.
fn policy(key: RateKey, count: u32, per_secs: u64, burst: u32) -> RatePolicy {
    RatePolicy {
        key,
        rate: Rate {
            count: NonZeroU32::new(count).unwrap(),
            per: Duration::from_secs(per_secs),
        },
        burst,
    }
}

fn policies(entries: &[(&str, RatePolicy)]) -> BTreeMap<String, RatePolicy> {
    entries
        .iter()
        .map(|(name, policy)| ((*name).to_owned(), policy.clone()))
        .collect()
}

fn build(
    entries: &[(&str, RatePolicy)],
    clock: &FakeRelativeClock,
    previous: Option<&RateLimits<FakeRelativeClock>>,
) -> RateLimits<FakeRelativeClock> {
    RateLimits::build_with(&policies(entries), None, previous, clock, MAX_TRACKED_KEYS).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn anonymous(client_ip: &str) -> Subject<'static> {
    Subject {
        identity: None,
        client_ip: ip(client_ip),
        route: "/api",
    }
}

fn identified<'a>(identity: &'a Arc<str>, client_ip: &str) -> Subject<'a> {
    Subject {
        identity: Some(identity),
        client_ip: ip(client_ip),
        route: "/api",
    }
}

fn state(result: &Result<Allowed, RateRefusal>) -> String {
    let headers = match result {
        Ok(allowed) => &allowed.headers,
        Err(RateRefusal::Exceeded { headers, .. }) => headers,
        Err(RateRefusal::Unavailable) => panic!("unavailable"),
    };
    headers.state.to_str().unwrap().to_owned()
}

fn retry_after(result: &Result<Allowed, RateRefusal>) -> u64 {
    match result {
        Err(RateRefusal::Exceeded {
            retry_after_secs, ..
        }) => *retry_after_secs,
        other => panic!("expected Exceeded, got {other:?}"),
    }
}

/// Spends `n` admitted requests of `subject`, asserting each is admitted.
async fn spend(limits: &RateLimits<FakeRelativeClock>, name: &str, subject: &Subject<'_>, n: u32) {
    for i in 0..n {
        let result = limits.check(name, subject).await;
        assert!(result.is_ok(), "request {i} of {n} refused: {result:?}");
    }
}

#[tokio::test]
async fn burst_then_exceeded_with_exact_retry_after_and_headers() {
    let clock = FakeRelativeClock::default();
    // 6/min: one request every 10 s, three at once.
    let limits = build(
        &[("default", policy(RateKey::Identity, 6, 60, 3))],
        &clock,
        None,
    );
    let bot: Arc<str> = Arc::from("ci-bot");
    let subject = identified(&bot, "192.0.2.1");

    let first = limits.check("default", &subject).await;
    let Ok(allowed) = &first else {
        panic!("first request refused")
    };
    assert_eq!(allowed.headers.policy, "\"default\";q=3;w=30");
    assert_eq!(state(&first), "\"default\";r=2;t=10");
    assert_eq!(
        state(&limits.check("default", &subject).await),
        "\"default\";r=1;t=10"
    );
    assert_eq!(
        state(&limits.check("default", &subject).await),
        "\"default\";r=0;t=10"
    );

    let refused = limits.check("default", &subject).await;
    assert_eq!(retry_after(&refused), 10);
    assert_eq!(state(&refused), "\"default\";r=0;t=10");
    if let Err(RateRefusal::Exceeded { headers, .. }) = &refused {
        assert_eq!(headers.policy, "\"default\";q=3;w=30");
    }

    // Retry-After rounds up: 5.5 s left → 6.
    clock.advance(Duration::from_millis(4_500));
    let refused = limits.check("default", &subject).await;
    assert_eq!(retry_after(&refused), 6);
    assert_eq!(state(&refused), "\"default\";r=0;t=6");

    // At exactly 10 s one cell has dripped back.
    clock.advance(Duration::from_millis(5_500));
    assert_eq!(
        state(&limits.check("default", &subject).await),
        "\"default\";r=0;t=10"
    );
    assert_eq!(retry_after(&limits.check("default", &subject).await), 10);
}

#[tokio::test]
async fn sub_second_waits_round_up_to_one_second() {
    let clock = FakeRelativeClock::default();
    let limits = build(&[("fast", policy(RateKey::Ip, 10, 1, 1))], &clock, None);
    let subject = anonymous("192.0.2.1");
    spend(&limits, "fast", &subject, 1).await;
    let refused = limits.check("fast", &subject).await;
    assert_eq!(retry_after(&refused), 1, "100 ms left is Retry-After: 1");
    assert_eq!(state(&refused), "\"fast\";r=0;t=1");
}

#[tokio::test]
async fn identities_have_independent_budgets() {
    let clock = FakeRelativeClock::default();
    let limits = build(&[("p", policy(RateKey::Identity, 1, 60, 2))], &clock, None);
    let (alice, bob): (Arc<str>, Arc<str>) = (Arc::from("alice"), Arc::from("bob"));
    // Same IP: the identity, not the address, is the key.
    spend(&limits, "p", &identified(&alice, "192.0.2.1"), 2).await;
    assert!(
        limits
            .check("p", &identified(&alice, "192.0.2.1"))
            .await
            .is_err()
    );
    spend(&limits, "p", &identified(&bob, "192.0.2.1"), 2).await;
    // Alice from another IP is still Alice.
    assert!(
        limits
            .check("p", &identified(&alice, "198.51.100.7"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn anonymous_callers_are_keyed_by_ip_apart_from_identities() {
    let clock = FakeRelativeClock::default();
    let limits = build(&[("p", policy(RateKey::Identity, 1, 60, 2))], &clock, None);
    spend(&limits, "p", &anonymous("192.0.2.1"), 2).await;
    assert!(limits.check("p", &anonymous("192.0.2.1")).await.is_err());
    // The same client as an IPv4-mapped IPv6 address is the same key.
    assert!(
        limits
            .check("p", &anonymous("::ffff:192.0.2.1"))
            .await
            .is_err()
    );
    // Another anonymous IP has its own budget.
    spend(&limits, "p", &anonymous("192.0.2.2"), 2).await;
    // An identity named like the exhausted IP does not share its bucket…
    let lookalike: Arc<str> = Arc::from("192.0.2.1");
    spend(&limits, "p", &identified(&lookalike, "192.0.2.1"), 2).await;
    // …nor one named like the Redis key's namespace.
    let prefixed: Arc<str> = Arc::from("ip:192.0.2.2");
    spend(&limits, "p", &identified(&prefixed, "192.0.2.9"), 2).await;
}

#[tokio::test]
async fn ip_key_ignores_the_identity() {
    let clock = FakeRelativeClock::default();
    let limits = build(&[("p", policy(RateKey::Ip, 1, 60, 2))], &clock, None);
    let (alice, bob): (Arc<str>, Arc<str>) = (Arc::from("alice"), Arc::from("bob"));
    spend(&limits, "p", &identified(&alice, "192.0.2.1"), 2).await;
    assert!(
        limits
            .check("p", &identified(&bob, "192.0.2.1"))
            .await
            .is_err()
    );
    assert!(limits.check("p", &anonymous("192.0.2.1")).await.is_err());
}

#[tokio::test]
async fn route_key_is_one_budget_per_route() {
    let clock = FakeRelativeClock::default();
    let limits = build(&[("r", policy(RateKey::Route, 1, 60, 3))], &clock, None);
    let on = |route: &'static str, client: &'static str| Subject {
        identity: None,
        client_ip: ip(client),
        route,
    };
    // Three different clients share /api/a's budget.
    spend(&limits, "r", &on("/api/a", "192.0.2.1"), 1).await;
    spend(&limits, "r", &on("/api/a", "192.0.2.2"), 1).await;
    spend(&limits, "r", &on("/api/a", "192.0.2.3"), 1).await;
    assert!(limits.check("r", &on("/api/a", "192.0.2.4")).await.is_err());
    // /api/b is independent.
    spend(&limits, "r", &on("/api/b", "192.0.2.1"), 3).await;
}

#[tokio::test]
async fn budget_recovers_after_the_window() {
    let clock = FakeRelativeClock::default();
    let limits = build(&[("p", policy(RateKey::Ip, 2, 1, 4))], &clock, None);
    let subject = anonymous("192.0.2.1");
    spend(&limits, "p", &subject, 4).await;
    assert_eq!(retry_after(&limits.check("p", &subject).await), 1);
    // Half a window: two of four cells back.
    clock.advance(Duration::from_secs(1));
    spend(&limits, "p", &subject, 2).await;
    assert!(limits.check("p", &subject).await.is_err());
    // A whole refill (4 × 500 ms): the full burst again.
    clock.advance(Duration::from_secs(2));
    assert_eq!(state(&limits.check("p", &subject).await), "\"p\";r=3;t=1");
    spend(&limits, "p", &subject, 3).await;
    assert!(limits.check("p", &subject).await.is_err());
}

#[tokio::test]
async fn purge_keeps_decisions_unchanged() {
    let clock = FakeRelativeClock::default();
    // One every 10 s, three at once.
    let limits = build(&[("p", policy(RateKey::Ip, 1, 10, 3))], &clock, None);
    spend(&limits, "p", &anonymous("192.0.2.1"), 3).await;
    spend(&limits, "p", &anonymous("192.0.2.2"), 1).await;
    assert_eq!(limits.tracked_keys(), 2);
    // 20 s on: .2's bucket has long been full again (forgettable); .1 still owes 10 s.
    clock.advance(Duration::from_secs(20));
    limits.purge();
    assert_eq!(limits.tracked_keys(), 1);
    assert_eq!(
        state(&limits.check("p", &anonymous("192.0.2.1")).await),
        "\"p\";r=1;t=10"
    );
    assert_eq!(
        state(&limits.check("p", &anonymous("192.0.2.2")).await),
        "\"p\";r=2;t=10"
    );
}

#[tokio::test]
async fn state_survives_a_reload_with_an_unchanged_policy() {
    let clock = FakeRelativeClock::default();
    let kept = policy(RateKey::Ip, 1, 60, 2);
    let changed = policy(RateKey::Ip, 1, 60, 3);
    let old = build(&[("a", kept.clone()), ("b", kept.clone())], &clock, None);
    let subject = anonymous("192.0.2.1");
    spend(&old, "a", &subject, 2).await;
    spend(&old, "b", &subject, 2).await;

    let new = build(&[("a", kept.clone()), ("b", changed)], &clock, Some(&old));
    assert!(Arc::ptr_eq(&old.policies["a"], &new.policies["a"]));
    assert!(!Arc::ptr_eq(&old.policies["b"], &new.policies["b"]));
    // "a" keeps its spent bucket: no fresh burst for the client.
    assert!(new.check("a", &subject).await.is_err());
    // "b" changed: it starts empty with its new burst of 3.
    spend(&new, "b", &subject, 3).await;
    assert!(new.check("b", &subject).await.is_err());

    // A policy dropped and re-added later starts empty; an unknown name is refused loudly.
    let without = build(&[("b", policy(RateKey::Ip, 1, 60, 3))], &clock, Some(&new));
    assert_eq!(
        without.check("a", &subject).await,
        Err(RateRefusal::Unavailable)
    );
    let readded = build(&[("a", kept)], &clock, Some(&without));
    spend(&readded, "a", &subject, 2).await;
}

#[tokio::test]
async fn build_uses_the_real_clock_and_errors_on_a_bad_redis_url() {
    let settings = policies(&[("p", policy(RateKey::Ip, 10, 1, 5))]);
    let limits = RateLimits::build(&settings, None, None).unwrap();
    assert!(limits.check("p", &anonymous("192.0.2.1")).await.is_ok());
    assert_eq!(limits.redis_errors(), 0);

    let backend = RateBackend {
        redis: "not a url".to_owned(),
        timeout: Duration::from_millis(50),
        on_error: OnError::Deny,
    };
    let error = RateLimits::build(&settings, Some(&backend), None).unwrap_err();
    assert_eq!(error.key, "rate_limits.backend.redis", "{error}");
}

#[test]
fn log_throttle_lets_one_line_through_per_interval() {
    let throttle = LogThrottle::new();
    assert!(throttle.ready());
    assert!(!throttle.ready());
}

#[test]
fn limits_and_their_checks_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let limits = RateLimits::build(&policies(&[]), None, None).unwrap();
    send_sync(&limits);
    let identity: Arc<str> = Arc::from("x");
    let subject = identified(&identity, "192.0.2.1");
    send(&limits.check("p", &subject));
}

#[test]
fn redis_url_errors_do_not_echo_credentials() {
    for url in [
        "redis://user:s3cret@host:notaport/",
        "rediss://:s3cret@host/",
    ] {
        let backend = RateBackend {
            redis: url.to_owned(),
            timeout: Duration::from_millis(50),
            on_error: OnError::Local,
        };
        let error = RateLimits::build(&policies(&[]), Some(&backend), None).unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}
