//! Rate limiting through real TLS (SPEC §2 `[rate_limits.*]`, §4; issue 6): the burst then 429
//! with the exact `RateLimit-Policy`/`RateLimit` fields and `Retry-After`, the refusal metric,
//! keys by identity (IP fallback when anonymous), IP and route, `X-Forwarded-For` only from
//! trusted proxies, limiter state across reloads, and shared limits in a real `redis-server`:
//! two gateways on one budget, every `on_error` mode while Redis is down, recovery when it
//! returns, and startup without Redis.
//!
//! Every wait is bounded; the only polling is for the Redis backend's recovery (it skips Redis
//! for 500 ms after a failure).

use std::time::{Duration, Instant};

use gatehouse::reload::ReloadOutcome;
use http::Request;

use crate::support::auth::Layout;
use crate::support::gateway::compose_config;
use crate::support::redis::{self as redis_support, RedisServer};
use crate::support::{Resp, TestGateway, Upstream, empty, route_toml, upstream_toml};

// ------------------------------------------------------------------------------------ helpers

/// A `[server]` that trusts the loopback peer (the test client) to set `X-Forwarded-For`.
const TRUSTING_SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n";

/// How long a gateway may take to find a returning Redis.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Polling step while waiting for Redis recovery.
const POLL: Duration = Duration::from_millis(50);

/// A `[rate_limits.NAME]` table.
fn policy(name: &str, key: &str, rate: &str, burst: u32) -> String {
    format!("\n[rate_limits.{name}]\nkey = \"{key}\"\nrate = \"{rate}\"\nburst = {burst}\n")
}

/// `[rate_limits.backend]` for `url` with `on_error`.
fn backend(url: &str, on_error: &str) -> String {
    format!(
        "\n[rate_limits.backend]\nredis = \"{url}\"\ntimeout = \"1s\"\non_error = \"{on_error}\"\n"
    )
}

/// A public route proxying `path` to `api-service` under policy `name`.
fn limited(path: &str, name: &str) -> String {
    route_toml(path, "api-service", &format!("rate_limit = \"{name}\""))
}

/// `GET path` over HTTPS/1.1 with `headers`.
async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    gw.client().send(request.body(empty()).unwrap()).await
}

/// `GET path` with `X-Forwarded-For: xff`.
async fn get_from(gw: &TestGateway, path: &str, xff: &str) -> Resp {
    get(gw, path, &[("x-forwarded-for", xff)]).await
}

/// A 200 with exactly these `RateLimit-Policy` and `RateLimit` values.
#[track_caller]
fn assert_admitted(resp: &Resp, policy: &str, state: &str) {
    assert_eq!(
        resp.status,
        200,
        "admitted; body: {:?}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(
        resp.header("ratelimit-policy"),
        Some(policy),
        "RateLimit-Policy"
    );
    assert_eq!(resp.header("ratelimit"), Some(state), "RateLimit");
}

/// A 429 `rate limit exceeded` with `Retry-After` ≥ 1, `RateLimit-Policy: policy` and
/// `RateLimit: "NAME";r=0;t=<Retry-After>`; returns `Retry-After`.
#[track_caller]
fn assert_limited(resp: &Resp, name: &str, policy: &str) -> u64 {
    assert_eq!(resp.error(429), "rate limit exceeded");
    let retry_after: u64 = resp
        .header("retry-after")
        .expect("a 429 carries Retry-After")
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after} ≥ 1");
    assert_eq!(
        resp.header("ratelimit-policy"),
        Some(policy),
        "RateLimit-Policy"
    );
    assert_eq!(
        resp.header("ratelimit"),
        Some(format!("\"{name}\";r=0;t={retry_after}").as_str()),
        "RateLimit of a refusal: r=0 and t = Retry-After"
    );
    retry_after
}

/// A 503 `rate limiter unavailable` with `Retry-After: 1`.
#[track_caller]
fn assert_unavailable(resp: &Resp) {
    assert_eq!(resp.error(503), "rate limiter unavailable");
    assert_eq!(resp.header("retry-after"), Some("1"));
}

/// The admin `/metrics` text.
async fn metrics(gw: &TestGateway) -> String {
    let resp = gw.admin_get("/metrics").await;
    assert_eq!(resp.status, 200);
    resp.text()
}

/// The `gatehouse_rate_limited_total{route="route"}` sample, if exported.
async fn rate_limited_total(gw: &TestGateway, route: &str) -> Option<u64> {
    let prefix = format!("gatehouse_rate_limited_total{{route=\"{route}\"}} ");
    metrics(gw)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(|n| n.parse().unwrap()))
}

/// Reloads after the config file changed; asserts a new runtime is in use.
async fn reload(gw: &TestGateway) {
    let before = gw.gateway().shared().runtime.load().generation;
    let outcome = crate::support::within("reload", gw.gateway().reload()).await;
    assert!(
        matches!(
            outcome,
            ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged { .. }
        ),
        "{outcome:?}"
    );
    assert!(
        gw.gateway().shared().runtime.load().generation > before,
        "a new runtime is in use ({outcome:?})"
    );
}

/// Sends `GET path` every [`POLL`] until `done` accepts the response (bounded by
/// [`RECOVERY_TIMEOUT`]); returns that response.
async fn poll_until(
    gw: &TestGateway,
    path: &str,
    what: &str,
    done: impl Fn(&Resp) -> bool,
) -> Resp {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let resp = get(gw, path, &[]).await;
        if done(&resp) {
            return resp;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {RECOVERY_TIMEOUT:?}; last response {} {:?} ratelimit={:?}",
            resp.status,
            resp.text(),
            resp.header("ratelimit")
        );
        tokio::time::sleep(POLL).await;
    }
}

// ------------------------------------------------------------------------------- local limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_then_429_with_ratelimit_fields_retry_after_and_metric() {
    let up = Upstream::text("ok").await;
    let gw = TestGateway::start(&format!(
        "{}{}{}{}",
        policy("per-ip", "ip", "1/min", 3),
        upstream_toml("api-service", &[up.addr], ""),
        limited("/api", "per-ip"),
        route_toml("/open", "api-service", ""),
    ))
    .await;
    // 1/min with a bucket of 3: a drained bucket refills in 180 s, which admits 3.
    let policy = "\"per-ip\";q=3;w=180";

    for remaining in [2, 1, 0] {
        let resp = gw.get("/api/x").await;
        assert_admitted(&resp, policy, &format!("\"per-ip\";r={remaining};t=60"));
        assert_eq!(resp.text(), "ok");
    }
    assert_eq!(
        rate_limited_total(&gw, "/api").await,
        None,
        "no refusal yet"
    );

    // Over HTTP/2 too: the same client IP, the same bucket.
    let resp = gw.h2_client().get("/api/x").await;
    let retry_after = assert_limited(&resp, "per-ip", policy);
    assert!(
        (59..=60).contains(&retry_after),
        "the next cell drips back within 60 s: Retry-After {retry_after}"
    );
    assert_eq!(
        up.count(),
        3,
        "a refused request never reaches the upstream"
    );
    assert_eq!(rate_limited_total(&gw, "/api").await, Some(1));

    // A route without a limit is untouched and carries no rate-limit fields.
    let resp = gw.get("/open/x").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("ratelimit"), None);
    assert_eq!(resp.header("ratelimit-policy"), None);
    assert_eq!(rate_limited_total(&gw, "/open").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_key_gives_each_token_its_own_burst_and_anonymous_callers_fall_back_to_ip() {
    let up = Upstream::text("ok").await;
    let layout = Layout::new();
    let alice = format!("Bearer {}", layout.mint("alice", &["viewer"]));
    let bob = format!("Bearer {}", layout.mint("bob", &["viewer"]));
    let gw = layout
        .start(&format!(
            "{TRUSTING_SERVER}[auth]\ntokens = \"tokens.toml\"\n{}{}\n[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = [\"token\"]\nroles = [\"viewer\"]\nrate_limit = \"per-caller\"\n{}",
            policy("per-caller", "identity", "1/min", 2),
            upstream_toml("api-service", &[up.addr], ""),
            limited("/public", "per-caller"),
        ))
        .await;
    let policy = "\"per-caller\";q=2;w=120";

    // Alice spends her burst from two different IPs: the identity is the key, not the IP.
    let resp = get(
        &gw,
        "/api/a",
        &[
            ("authorization", &alice),
            ("x-forwarded-for", "203.0.113.10"),
        ],
    )
    .await;
    assert_admitted(&resp, policy, "\"per-caller\";r=1;t=60");
    let resp = get(
        &gw,
        "/api/a",
        &[
            ("authorization", &alice),
            ("x-forwarded-for", "203.0.113.11"),
        ],
    )
    .await;
    assert_admitted(&resp, policy, "\"per-caller\";r=0;t=60");
    let resp = get(
        &gw,
        "/api/a",
        &[
            ("authorization", &alice),
            ("x-forwarded-for", "203.0.113.12"),
        ],
    )
    .await;
    assert_limited(&resp, "per-caller", policy);

    // Bob, from the same IP as Alice's refusal, has a burst of his own.
    for remaining in [1, 0] {
        let resp = get(
            &gw,
            "/api/b",
            &[("authorization", &bob), ("x-forwarded-for", "203.0.113.12")],
        )
        .await;
        assert_admitted(&resp, policy, &format!("\"per-caller\";r={remaining};t=60"));
    }
    let resp = get(&gw, "/api/b", &[("authorization", &bob)]).await;
    assert_limited(&resp, "per-caller", policy);

    // A refused credential stops before the rate step: no fields, no cell spent.
    let resp = get(&gw, "/api/a", &[("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!(resp.error(401), "missing credentials");
    assert_eq!(resp.header("ratelimit"), None);

    // Anonymous callers on a public route fall back to their IP: one bucket per client IP, and
    // an IP's bucket is not an identity's (203.0.113.12 is fresh although Alice used it).
    for xff in ["198.51.100.7", "203.0.113.12"] {
        for remaining in [1, 0] {
            let resp = get_from(&gw, "/public/x", xff).await;
            assert_admitted(&resp, policy, &format!("\"per-caller\";r={remaining};t=60"));
        }
        let resp = get_from(&gw, "/public/x", xff).await;
        assert_limited(&resp, "per-caller", policy);
    }
    assert_eq!(up.count(), 8);
    assert_eq!(rate_limited_total(&gw, "/api").await, Some(2));
    assert_eq!(rate_limited_total(&gw, "/public").await, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_key_shares_one_budget_between_clients() {
    let up = Upstream::text("ok").await;
    let gw = TestGateway::start(&format!(
        "{TRUSTING_SERVER}{}{}{}{}",
        policy("per-route", "route", "1/min", 2),
        upstream_toml("api-service", &[up.addr], ""),
        limited("/a", "per-route"),
        limited("/b", "per-route"),
    ))
    .await;
    let policy = "\"per-route\";q=2;w=120";

    // Three different clients (by trusted X-Forwarded-For) and two protocols share /a's budget.
    let resp = get_from(&gw, "/a/1", "198.51.100.1").await;
    assert_admitted(&resp, policy, "\"per-route\";r=1;t=60");
    let resp = get_from(&gw, "/a/2", "198.51.100.2").await;
    assert_admitted(&resp, policy, "\"per-route\";r=0;t=60");
    let resp = gw
        .h2_client()
        .send(
            Request::get("/a/3")
                .header("x-forwarded-for", "198.51.100.3")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_limited(&resp, "per-route", policy);

    // Another route under the same policy has a budget of its own.
    let resp = get_from(&gw, "/b/1", "198.51.100.1").await;
    assert_admitted(&resp, policy, "\"per-route\";r=1;t=60");
    assert_eq!(rate_limited_total(&gw, "/a").await, Some(1));
    assert_eq!(rate_limited_total(&gw, "/b").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_changes_the_key_only_from_a_trusted_proxy() {
    let up = Upstream::text("ok").await;
    let body = format!(
        "{}{}{}",
        policy("per-ip", "ip", "1/min", 2),
        upstream_toml("api-service", &[up.addr], ""),
        limited("/api", "per-ip"),
    );
    let policy = "\"per-ip\";q=2;w=120";

    // Untrusted peer: every spoofed value lands in the peer's (127.0.0.1's) bucket.
    let gw = TestGateway::start(&body).await;
    let resp = get_from(&gw, "/api/x", "192.0.2.1").await;
    assert_admitted(&resp, policy, "\"per-ip\";r=1;t=60");
    let resp = get_from(&gw, "/api/x", "192.0.2.2").await;
    assert_admitted(&resp, policy, "\"per-ip\";r=0;t=60");
    for xff in ["192.0.2.3", "192.0.2.4, 192.0.2.5", "127.0.0.2"] {
        let resp = get_from(&gw, "/api/x", xff).await;
        assert_limited(&resp, "per-ip", policy);
    }
    let resp = get(&gw, "/api/x", &[]).await;
    assert_limited(&resp, "per-ip", policy);
    drop(gw);

    // Trusted peer: the right-most untrusted X-Forwarded-For entry is the client.
    let gw = TestGateway::start(&format!("{TRUSTING_SERVER}{body}")).await;
    for remaining in [1, 0] {
        let resp = get_from(&gw, "/api/x", "192.0.2.1").await;
        assert_admitted(&resp, policy, &format!("\"per-ip\";r={remaining};t=60"));
    }
    let resp = get_from(&gw, "/api/x", "192.0.2.1").await;
    assert_limited(&resp, "per-ip", policy);
    // The same client behind one more trusted hop.
    let resp = get_from(&gw, "/api/x", "192.0.2.1, 127.0.0.1").await;
    assert_limited(&resp, "per-ip", policy);
    // Another client, and the proxy's own requests, have buckets of their own.
    let resp = get_from(&gw, "/api/x", "192.0.2.2").await;
    assert_admitted(&resp, policy, "\"per-ip\";r=1;t=60");
    let resp = get(&gw, "/api/x", &[]).await;
    assert_admitted(&resp, policy, "\"per-ip\";r=1;t=60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_state_survives_an_unrelated_reload_and_resets_when_the_policy_changes() {
    let up = Upstream::text("ok").await;
    let body = |burst: u32, dummy: bool| {
        format!(
            "{}{}{}{}",
            policy("per-ip", "ip", "1/min", burst),
            upstream_toml("api-service", &[up.addr], ""),
            limited("/api", "per-ip"),
            if dummy {
                route_toml("/dummy", "api-service", "")
            } else {
                String::new()
            },
        )
    };
    let gw = TestGateway::start(&body(2, false)).await;
    let policy2 = "\"per-ip\";q=2;w=120";
    for remaining in [1, 0] {
        let resp = gw.get("/api/x").await;
        assert_admitted(&resp, policy2, &format!("\"per-ip\";r={remaining};t=60"));
    }
    assert_limited(&gw.get("/api/x").await, "per-ip", policy2);

    // An unrelated change (one more route): the bucket stays spent.
    let missing = gw.get("/dummy").await;
    assert_eq!(missing.error(404), "no route for /dummy");
    std::fs::write(gw.file("gateway.toml"), compose_config(&body(2, true))).unwrap();
    reload(&gw).await;
    let resp = gw.get("/dummy").await;
    assert_eq!(resp.status, 200, "the reload is in effect");
    assert_limited(&gw.get("/api/x").await, "per-ip", policy2);

    // The policy itself changes: a fresh limiter under the new settings.
    std::fs::write(gw.file("gateway.toml"), compose_config(&body(3, true))).unwrap();
    reload(&gw).await;
    let policy3 = "\"per-ip\";q=3;w=180";
    for remaining in [2, 1, 0] {
        let resp = gw.get("/api/x").await;
        assert_admitted(&resp, policy3, &format!("\"per-ip\";r={remaining};t=60"));
    }
    assert_limited(&gw.get("/api/x").await, "per-ip", policy3);
    assert_eq!(rate_limited_total(&gw, "/api").await, Some(3));
}

// ------------------------------------------------------------------------------ shared limits

/// A gateway whose `/api` is limited by `name` (1/min, `burst`, per IP) through the Redis
/// backend at `url`, and whose `/free` has no limit.
async fn redis_gateway(
    up: &Upstream,
    url: &str,
    on_error: &str,
    name: &str,
    burst: u32,
) -> TestGateway {
    TestGateway::start(&format!(
        "{}{}{}{}{}",
        policy(name, "ip", "1/min", burst),
        backend(url, on_error),
        upstream_toml("api-service", &[up.addr], ""),
        limited("/api", name),
        route_toml("/free", "api-service", ""),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_redis_budget_deny_while_it_is_down_and_resume_after() {
    if crate::support::redis::skip_without_server() {
        return;
    }
    let up = Upstream::text("ok").await;
    let mut redis = RedisServer::start().await;
    let a = redis_gateway(&up, &redis.url(), "deny", "shared", 4).await;
    let b = redis_gateway(&up, &redis.url(), "deny", "shared", 4).await;
    let policy = "\"shared\";q=4;w=240";

    // Routes without a limit never touch Redis.
    for gw in [&a, &b] {
        assert_eq!(gw.get("/free/x").await.status, 200);
    }
    assert_eq!(redis.keys().await, Vec::<String>::new());

    // One budget of 4, spent alternately on both gateways; the 5th is refused on either.
    for (i, remaining) in [3, 2, 1, 0].into_iter().enumerate() {
        let gw = if i % 2 == 0 { &a } else { &b };
        let resp = gw.get("/api/x").await;
        assert_admitted(&resp, policy, &format!("\"shared\";r={remaining};t=60"));
    }
    for gw in [&a, &b] {
        let retry_after = assert_limited(&gw.get("/api/x").await, "shared", policy);
        assert!(
            (59..=60).contains(&retry_after),
            "Retry-After {retry_after}"
        );
    }
    assert_eq!(redis.keys().await, ["gatehouse:rl:shared:ip:127.0.0.1"]);
    assert_eq!(rate_limited_total(&a, "/api").await, Some(1));
    assert_eq!(rate_limited_total(&b, "/api").await, Some(1));

    // Redis dies: deny answers 503 on the limited route; the unlimited one still serves.
    let port = redis.port;
    redis.kill();
    for gw in [&a, &b] {
        for _ in 0..2 {
            assert_unavailable(&gw.get("/api/x").await);
        }
        let started = Instant::now();
        assert_eq!(gw.get("/free/x").await.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "an unlimited route does not wait on Redis ({:?})",
            started.elapsed()
        );
    }

    // Redis returns empty on the same port: both gateways find it and share one budget again.
    let redis = RedisServer::start_on(port).await;
    let resp = poll_until(&a, "/api/x", "gateway a recovers", |r| r.status != 503).await;
    assert_admitted(&resp, policy, "\"shared\";r=3;t=60");
    let resp = poll_until(&b, "/api/x", "gateway b recovers", |r| r.status != 503).await;
    assert_admitted(&resp, policy, "\"shared\";r=2;t=60");
    assert_admitted(&a.get("/api/x").await, policy, "\"shared\";r=1;t=60");
    assert_admitted(&b.get("/api/x").await, policy, "\"shared\";r=0;t=60");
    assert_limited(&a.get("/api/x").await, "shared", policy);
    assert_limited(&b.get("/api/x").await, "shared", policy);
    assert_eq!(redis.keys().await, ["gatehouse:rl:shared:ip:127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_test_each_on_error_mode_then_shared_limits_resume() {
    if crate::support::redis::skip_without_server() {
        return;
    }
    let up = Upstream::text("ok").await;
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    // One policy name per mode, so their Redis buckets are separate.
    let allow = redis_gateway(&up, &url, "allow", "allow", 2).await;
    let local = redis_gateway(&up, &url, "local", "local", 2).await;
    let allow_policy = "\"allow\";q=2;w=120";
    let local_policy = "\"local\";q=2;w=120";

    // Redis decides while it is up: one cell each.
    assert_admitted(
        &allow.get("/api/x").await,
        allow_policy,
        "\"allow\";r=1;t=60",
    );
    assert_admitted(
        &local.get("/api/x").await,
        local_policy,
        "\"local\";r=1;t=60",
    );
    assert_eq!(
        redis.keys().await,
        [
            "gatehouse:rl:allow:ip:127.0.0.1",
            "gatehouse:rl:local:ip:127.0.0.1"
        ]
    );

    let port = redis.port;
    redis.kill();

    // allow: admits past the burst; RateLimit is this replica's local limiter, as a hint.
    for remaining in [1, 0] {
        let resp = allow.get("/api/x").await;
        assert_admitted(
            &resp,
            allow_policy,
            &format!("\"allow\";r={remaining};t=60"),
        );
    }
    for _ in 0..3 {
        let resp = allow.get("/api/x").await;
        assert_eq!(resp.status, 200, "on_error = allow admits");
        let state = resp.header("ratelimit").unwrap();
        assert!(state.starts_with("\"allow\";r=0;t="), "hint {state}");
    }

    // local: this replica's own limiter (fresh: it never decided while Redis was up) limits.
    for remaining in [1, 0] {
        let resp = local.get("/api/x").await;
        assert_admitted(
            &resp,
            local_policy,
            &format!("\"local\";r={remaining};t=60"),
        );
    }
    assert_limited(&local.get("/api/x").await, "local", local_policy);
    assert_eq!(local.get("/free/x").await.status, 200);
    assert_eq!(rate_limited_total(&allow, "/api").await, None);
    assert_eq!(rate_limited_total(&local, "/api").await, Some(1));

    // Redis returns empty: its fresh buckets decide again (r=1 where the local state says 0).
    let redis = RedisServer::start_on(port).await;
    let resp = poll_until(&allow, "/api/x", "allow gateway uses Redis again", |r| {
        r.header("ratelimit") == Some("\"allow\";r=1;t=60")
    })
    .await;
    assert_admitted(&resp, allow_policy, "\"allow\";r=1;t=60");
    assert_admitted(
        &allow.get("/api/x").await,
        allow_policy,
        "\"allow\";r=0;t=60",
    );
    assert_limited(&allow.get("/api/x").await, "allow", allow_policy);

    let resp = poll_until(&local, "/api/x", "local gateway uses Redis again", |r| {
        r.status == 200
    })
    .await;
    assert_admitted(&resp, local_policy, "\"local\";r=1;t=60");
    assert_admitted(
        &local.get("/api/x").await,
        local_policy,
        "\"local\";r=0;t=60",
    );
    assert_limited(&local.get("/api/x").await, "local", local_policy);
    assert_eq!(
        redis.keys().await,
        [
            "gatehouse:rl:allow:ip:127.0.0.1",
            "gatehouse:rl:local:ip:127.0.0.1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_starts_and_serves_while_redis_is_down_then_finds_it() {
    if crate::support::redis::skip_without_server() {
        return;
    }
    let up = Upstream::text("ok").await;
    let port = redis_support::free_port();
    let gw = redis_gateway(&up, &redis_support::url(port), "deny", "shared", 2).await;
    let policy = "\"shared\";q=2;w=120";

    assert_eq!(gw.get("/free/x").await.status, 200);
    assert_unavailable(&gw.get("/api/x").await);
    assert_eq!(
        gw.get("/free/x").await.status,
        200,
        "unlimited routes never wait on Redis"
    );
    assert_eq!(up.count(), 2, "a 503 never reaches the upstream");

    let redis = RedisServer::start_on(port).await;
    let resp = poll_until(&gw, "/api/x", "the gateway finds Redis", |r| {
        r.status != 503
    })
    .await;
    assert_admitted(&resp, policy, "\"shared\";r=1;t=60");
    assert_admitted(&gw.get("/api/x").await, policy, "\"shared\";r=0;t=60");
    assert_limited(&gw.get("/api/x").await, "shared", policy);
    assert_eq!(redis.keys().await, ["gatehouse:rl:shared:ip:127.0.0.1"]);
}
