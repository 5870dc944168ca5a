//! Criterion benches for rate limiting: one local check against 100k live keys (IP and identity
//! keys), and the Redis backend's latency per check on loopback next to a bare PING, so the
//! added cost is visible. The Redis group starts its own `redis-server` on a free port.
//!
//! Run: `cargo bench --bench ratelimit`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions
#![allow(clippy::expect_used)] // a bench with a broken fixture should stop loudly

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::num::NonZeroU32;
use std::pin::pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::config::{OnError, Rate, RateBackend, RateKey, RatePolicy};
use gatehouse::ratelimit::{RateLimits, RateRefusal, Subject};

/// Live keys in the local benches.
const LIVE_KEYS: u32 = 100_000;
/// Distinct clients in the Redis bench.
const REDIS_KEYS: u32 = 1_000;

/// 1000/s, burst 1000.
fn policy(key: RateKey) -> BTreeMap<String, RatePolicy> {
    policy_with(key, 1_000, Duration::from_secs(1))
}

fn policy_with(key: RateKey, count: u32, per: Duration) -> BTreeMap<String, RatePolicy> {
    let policy = RatePolicy {
        key,
        rate: Rate {
            count: NonZeroU32::new(count).expect("non-zero"),
            per,
        },
        burst: 1_000,
    };
    BTreeMap::from([("p".to_owned(), policy)])
}

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

/// Runs a future that never waits (the local path) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a local check never waits"),
    }
}

fn local(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit/local");

    let limits = RateLimits::build(&policy(RateKey::Ip), None, None).expect("builds");
    for n in 0..LIVE_KEYS {
        let _ = ready(limits.check("p", &subject_ip(n)));
    }
    assert_eq!(limits.tracked_keys(), LIVE_KEYS as usize);
    let mut n = 0;
    group.bench_function("ip key, 100k live keys", |b| {
        b.iter(|| {
            n = (n + 1) % LIVE_KEYS;
            black_box(ready(limits.check("p", &subject_ip(n))).is_ok())
        })
    });

    let limits = RateLimits::build(&policy(RateKey::Identity), None, None).expect("builds");
    let identities: Vec<Arc<str>> = (0..LIVE_KEYS)
        .map(|n| Arc::from(format!("user-{n:06}")))
        .collect();
    let subject = |n: u32| Subject {
        identity: Some(&identities[n as usize]),
        client_ip: ip(0),
        route: "/api",
    };
    for n in 0..LIVE_KEYS {
        let _ = ready(limits.check("p", &subject(n)));
    }
    let mut n = 0;
    group.bench_function("identity key, 100k live keys", |b| {
        b.iter(|| {
            n = (n + 1) % LIVE_KEYS;
            black_box(ready(limits.check("p", &subject(n))).is_ok())
        })
    });

    // purge() walks every key; with 1/h nothing is stale, so each run walks all 100k.
    let limits = RateLimits::build(
        &policy_with(RateKey::Ip, 1, Duration::from_secs(3600)),
        None,
        None,
    )
    .expect("builds");
    for n in 0..LIVE_KEYS {
        let _ = ready(limits.check("p", &subject_ip(n)));
    }
    group.bench_function("purge, 100k live keys", |b| b.iter(|| limits.purge()));
    assert_eq!(limits.tracked_keys(), LIVE_KEYS as usize);
    group.finish();
}

fn subject_ip(n: u32) -> Subject<'static> {
    Subject {
        identity: None,
        client_ip: ip(n),
        route: "/api",
    }
}

/// A `redis-server` child on a free loopback port, killed on drop.
struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("redis-server not found ({error}): apt-get install redis-server")
            });
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("a valid URL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(connection) = client.get_multiplexed_async_connection().await {
            return connection;
        }
        assert!(Instant::now() < deadline, "redis-server not ready in 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn redis_path(c: &mut Criterion) {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut ping = runtime.block_on(connect(&server.url));
    let backend = RateBackend {
        redis: server.url.clone(),
        timeout: Duration::from_secs(1),
        on_error: OnError::Deny,
    };
    let limits = RateLimits::build(&policy(RateKey::Ip), Some(&backend), None).expect("builds");
    runtime.block_on(async {
        assert!(
            limits.check("p", &subject_ip(0)).await.is_ok(),
            "Redis decides"
        );
    });

    let mut group = c.benchmark_group("ratelimit/redis");
    group.bench_function("PING round trip (reference)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let pong: String = redis::cmd("PING")
                        .query_async(&mut ping)
                        .await
                        .expect("PONG");
                    black_box(pong);
                }
                start.elapsed()
            })
        })
    });
    let mut n = 0;
    group.bench_function("check via Redis (EVALSHA GCRA)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    n = (n + 1) % REDIS_KEYS;
                    let decision = limits.check("p", &subject_ip(n)).await;
                    assert!(
                        !matches!(decision, Err(RateRefusal::Unavailable)),
                        "Redis failed"
                    );
                    black_box(decision.is_ok());
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    assert_eq!(limits.redis_errors(), 0, "every check was decided by Redis");
    drop(server);
}

criterion_group!(benches, local, redis_path);
criterion_main!(benches);
