//! Redis backend tests against a real `redis-server` started on a free loopback port. Without
//! the binary they say so and pass, unless `GATEHOUSE_TEST_REDIS=require` (see the helper).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{OnError, Rate, RateBackend, RateKey, RatePolicy};
use crate::ratelimit::{Allowed, RateLimits, RateRefusal, Subject};

use super::{Key, bucket_key, key_prefix};

/// How long the backend may take to find a restarted server.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Polling step of the bounded waits.
const POLL: Duration = Duration::from_millis(25);
/// The backend's per-call timeout in these tests: generous, so a slow CI machine is not an outage.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// The same `redis-server` helper the integration tests use.
#[path = "../../../tests/it/support/redis.rs"]
mod server;

use server::{RedisServer, connection, free_port, skip_without_server};

/// `shared`: 5 per minute, 5 at once, per client IP.
fn policies() -> BTreeMap<String, RatePolicy> {
    let policy = RatePolicy {
        key: RateKey::Ip,
        rate: Rate {
            count: NonZeroU32::new(5).unwrap(),
            per: Duration::from_secs(60),
        },
        burst: 5,
    };
    BTreeMap::from([("shared".to_owned(), policy)])
}

fn backend(url: &str, on_error: OnError, timeout: Duration) -> RateBackend {
    RateBackend {
        redis: url.to_owned(),
        timeout,
        on_error,
    }
}

fn replica(url: &str, on_error: OnError) -> RateLimits {
    RateLimits::build(
        &policies(),
        Some(&backend(url, on_error, CALL_TIMEOUT)),
        None,
    )
    .unwrap()
}

fn client(ip: &str) -> Subject<'static> {
    Subject {
        identity: None,
        client_ip: ip.parse::<IpAddr>().unwrap(),
        route: "/api",
    }
}

fn state(allowed: &Allowed) -> &str {
    allowed.headers.state.to_str().unwrap()
}

/// Alternates `replicas` over `requests` checks of `subject`; returns the admitted `RateLimit`
/// values and asserts every refusal is a 429 with `r=0`.
async fn alternate(
    replicas: &[&RateLimits],
    subject: &Subject<'_>,
    requests: usize,
) -> Vec<String> {
    let mut admitted = Vec::new();
    for i in 0..requests {
        match replicas[i % replicas.len()].check("shared", subject).await {
            Ok(allowed) => admitted.push(state(&allowed).to_owned()),
            Err(RateRefusal::Exceeded {
                retry_after_secs,
                headers,
            }) => {
                assert_eq!(retry_after_secs, 12, "one cell drips back every 12 s");
                assert_eq!(headers.state, "\"shared\";r=0;t=12");
            }
            Err(RateRefusal::Unavailable) => panic!("Redis could not decide request {i}"),
        }
    }
    admitted
}

/// Polls until `replica` gets a decision from Redis again (its error count stops growing).
async fn wait_until_redis_decides(replica: &RateLimits, probe: &Subject<'_>) {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let errors = replica.redis_errors();
        let _ = replica.check("shared", probe).await;
        if replica.redis_errors() == errors {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Redis not used again within {RECOVERY_TIMEOUT:?} of its restart"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[test]
fn keys_are_namespaced_by_policy_and_kind() {
    assert_eq!(key_prefix("default"), "gatehouse:rl:default:");
    assert_eq!(key_prefix("a:b%c"), "gatehouse:rl:a%3Ab%25c:");
    let prefix = key_prefix("p");
    assert_eq!(
        bucket_key(&prefix, &Key::Ip("192.0.2.1".parse().unwrap())),
        "gatehouse:rl:p:ip:192.0.2.1"
    );
    assert_eq!(
        bucket_key(&prefix, &Key::Id(Arc::from("192.0.2.1"))),
        "gatehouse:rl:p:id:192.0.2.1"
    );
    assert_eq!(
        bucket_key(&prefix, &Key::Route(Arc::from("/api"))),
        "gatehouse:rl:p:route:/api"
    );
}

#[tokio::test]
async fn two_replicas_enforce_one_budget() {
    if skip_without_server() {
        return;
    }
    let server = RedisServer::start().await;
    let a = replica(&server.url(), OnError::Deny);
    let b = replica(&server.url(), OnError::Deny);

    let admitted = alternate(&[&a, &b], &client("192.0.2.1"), 10).await;
    assert_eq!(
        admitted,
        [
            "\"shared\";r=4;t=12",
            "\"shared\";r=3;t=12",
            "\"shared\";r=2;t=12",
            "\"shared\";r=1;t=12",
            "\"shared\";r=0;t=12",
        ],
        "5 admitted between both replicas, with the same headers as the local limiter"
    );
    // Redis decided everything: no errors, and the local limiters never saw a key.
    assert_eq!((a.redis_errors(), b.redis_errors()), (0, 0));
    assert_eq!((a.tracked_keys(), b.tracked_keys()), (0, 0));

    // The bucket lives under its namespaced key, expiring when it would be full again.
    let mut connection = connection(&server.url()).await.unwrap();
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg("gatehouse:rl:shared:ip:192.0.2.1")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((55_000..=60_000).contains(&ttl), "PTTL {ttl}");

    // A reload keeps the connection and the error counter.
    let reloaded = RateLimits::build(
        &policies(),
        Some(&backend(&server.url(), OnError::Deny, CALL_TIMEOUT)),
        Some(&a),
    )
    .unwrap();
    let (Some(before), Some(after)) = (&a.redis, &reloaded.redis) else {
        panic!("backend missing")
    };
    assert!(Arc::ptr_eq(&before.connection, &after.connection));
    assert!(
        reloaded
            .check("shared", &client("192.0.2.1"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn outage_follows_on_error_then_shared_limits_resume() {
    if skip_without_server() {
        return;
    }
    let mut server = RedisServer::start().await;
    let port = server.port;
    let url = server.url();
    let local = replica(&url, OnError::Local);
    let allow = replica(&url, OnError::Allow);
    let deny = replica(&url, OnError::Deny);
    let subject = client("192.0.2.1");
    // Healthy: Redis decides for all three (3 of the 5 shared cells spent).
    assert_eq!(
        alternate(&[&local, &allow, &deny], &subject, 3).await.len(),
        3
    );
    assert_eq!(
        local.tracked_keys() + allow.tracked_keys() + deny.tracked_keys(),
        0
    );

    server.kill();

    // deny: 503 rate limiter unavailable.
    assert_eq!(
        deny.check("shared", &subject).await,
        Err(RateRefusal::Unavailable)
    );
    // allow: admitted, far past the budget.
    for _ in 0..10 {
        assert!(allow.check("shared", &subject).await.is_ok());
    }
    // local: this replica's own limiter, with its own full burst of 5.
    for _ in 0..5 {
        assert!(local.check("shared", &subject).await.is_ok());
    }
    assert!(matches!(
        local.check("shared", &subject).await,
        Err(RateRefusal::Exceeded { .. })
    ));
    for replica in [&local, &allow, &deny] {
        assert!(replica.redis_errors() > 0);
    }

    // Redis returns on the same port (empty: no persistence): each replica finds it again…
    let server = RedisServer::start_on(port).await;
    let probe = client("198.51.100.1");
    for replica in [&local, &allow, &deny] {
        wait_until_redis_decides(replica, &probe).await;
    }
    // …and the three enforce one budget together again.
    let fresh = client("192.0.2.2");
    let admitted = alternate(&[&local, &allow, &deny], &fresh, 9).await;
    assert_eq!(admitted.len(), 5);
    drop(server);
}

#[tokio::test]
async fn startup_with_redis_down_neither_blocks_nor_waits_per_request() {
    if skip_without_server() {
        return;
    }
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let started = Instant::now();
    let deny = RateLimits::build(
        &policies(),
        Some(&backend(&url, OnError::Deny, Duration::from_millis(200))),
        None,
    )
    .unwrap();
    let subject = client("192.0.2.1");
    // Not connected (nothing listens): an error, within the timeout.
    assert_eq!(
        deny.check("shared", &subject).await,
        Err(RateRefusal::Unavailable)
    );
    assert_eq!(deny.redis_errors(), 1);
    // While marked down, checks do not wait for Redis at all.
    let skipped = Instant::now();
    assert_eq!(
        deny.check("shared", &subject).await,
        Err(RateRefusal::Unavailable)
    );
    assert!(skipped.elapsed() < Duration::from_millis(50));
    assert_eq!(deny.redis_errors(), 2);
    assert!(started.elapsed() < Duration::from_secs(2));

    // Redis comes up later: the backend connects by itself.
    let _server = RedisServer::start_on(port).await;
    wait_until_redis_decides(&deny, &client("198.51.100.1")).await;
    assert!(deny.check("shared", &subject).await.is_ok());
}

#[tokio::test]
async fn slower_than_timeout_counts_as_an_error() {
    if skip_without_server() {
        return;
    }
    let server = RedisServer::start().await;
    let deny = RateLimits::build(
        &policies(),
        Some(&backend(
            &server.url(),
            OnError::Deny,
            Duration::from_millis(100),
        )),
        None,
    )
    .unwrap();
    let subject = client("192.0.2.1");
    assert!(deny.check("shared", &subject).await.is_ok());
    // Freeze every client for 1.5 s.
    let mut admin = connection(&server.url()).await.unwrap();
    let _: () = ::redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        deny.check("shared", &subject).await,
        Err(RateRefusal::Unavailable)
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the timeout bounds the call"
    );
    assert_eq!(deny.redis_errors(), 1);
    // The pause ends by itself (it holds the pausing connection too); Redis decides again.
    wait_until_redis_decides(&deny, &client("198.51.100.1")).await;
}
