//! `FailureLimit` over governor's `FakeRelativeClock`: the block, its `Retry-After` and its end
//! are exact, with no sleeping.

use std::num::NonZeroU32;

use governor::clock::FakeRelativeClock;

use super::*;
use crate::config::{Rate, RateKey};

const IP: &str = "192.0.2.1";

fn policy(count: u32, per: Duration, burst: u32) -> RatePolicy {
    RatePolicy {
        key: RateKey::Ip,
        rate: Rate {
            count: NonZeroU32::new(count).unwrap(),
            per,
        },
        burst,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn retry_after(result: Result<(), GatewayError>) -> Option<u64> {
    match result {
        Ok(()) => None,
        Err(GatewayError::TooManyFailures { retry_after_secs }) => Some(retry_after_secs),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[test]
fn burst_of_failures_then_blocked_even_for_valid_attempts() {
    let limit = FailureLimit::new(&policy(1, Duration::from_secs(60), 3));
    for _ in 0..3 {
        assert!(limit.record_failure(ip(IP)).is_none());
    }
    let error = limit
        .record_failure(ip(IP))
        .expect("fourth failure is limited");
    assert_eq!(error.to_string(), "too many failed attempts");
    assert!(
        matches!(limit.check(ip(IP)), Err(GatewayError::TooManyFailures { retry_after_secs }) if (1..=60).contains(&retry_after_secs))
    );
    assert!(
        limit.check(ip("192.0.2.2")).is_ok(),
        "other IPs are unaffected"
    );
}

#[test]
fn block_lasts_exactly_one_refill_then_one_more_failure_is_allowed() {
    let clock = FakeRelativeClock::default();
    let limit = FailureLimit::with_clock(&policy(1, Duration::from_secs(60), 3), clock.clone());

    assert_eq!(retry_after(limit.check(ip(IP))), None, "nobody blocked yet");
    for _ in 0..3 {
        assert!(limit.record_failure(ip(IP)).is_none(), "within the burst");
    }
    assert_eq!(
        retry_after(limit.check(ip(IP))),
        None,
        "the burst is spent, not exceeded"
    );
    let blocked = limit
        .record_failure(ip(IP))
        .expect("the fourth failure blocks");
    assert!(matches!(
        blocked,
        GatewayError::TooManyFailures {
            retry_after_secs: 60
        }
    ));

    clock.advance(Duration::from_secs(59));
    assert_eq!(retry_after(limit.check(ip(IP))), Some(1), "one second left");
    assert_eq!(retry_after(limit.check(ip("192.0.2.2"))), None);

    clock.advance(Duration::from_secs(1));
    assert_eq!(retry_after(limit.check(ip(IP))), None, "the block ended");
    assert!(
        limit.record_failure(ip(IP)).is_none(),
        "one cell refilled: one more failure is allowed"
    );
    assert!(
        limit.record_failure(ip(IP)).is_some(),
        "and the next blocks again"
    );
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    let clock = FakeRelativeClock::default();
    let limit = FailureLimit::with_clock(&policy(2, Duration::from_secs(3), 1), clock.clone());

    assert!(limit.record_failure(ip(IP)).is_none());
    // One cell per 1.5 s: the block is 1.5 s, announced as 2.
    assert!(matches!(
        limit.record_failure(ip(IP)),
        Some(GatewayError::TooManyFailures {
            retry_after_secs: 2
        })
    ));
    clock.advance(Duration::from_millis(1_000));
    assert_eq!(
        retry_after(limit.check(ip(IP))),
        Some(1),
        "0.5 s left, rounded up"
    );
    clock.advance(Duration::from_millis(499));
    assert_eq!(
        retry_after(limit.check(ip(IP))),
        Some(1),
        "1 ms left, still blocked"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(retry_after(limit.check(ip(IP))), None);
}

#[test]
fn ipv4_and_ipv6_clients_are_counted_apart() {
    let clock = FakeRelativeClock::default();
    let limit = FailureLimit::with_clock(&policy(1, Duration::from_secs(60), 1), clock);
    assert!(limit.record_failure(ip(IP)).is_none());
    assert!(limit.record_failure(ip(IP)).is_some());
    assert!(limit.record_failure(ip("2001:db8::1")).is_none());
    assert_eq!(retry_after(limit.check(ip("2001:db8::1"))), None);
}
