//! Soundness of external auth and admin tokens (SPEC §8.2, §8.3, §8.8, §8.12; issue 9 faults 2,
//! 3, 8 and 12): a cached decision is reused only for what the auth service decided on, every
//! reload empties the cache, a flood of unknown credentials cannot evict a live allow, external
//! callers are distinct identities, the auth service's 401s and refused admin tokens count
//! toward `failure_limit`, and an auth URL with `user:password@` works without ever showing the
//! password.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gatehouse::reload::ReloadOutcome;
use http::{Method, Request, Response};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::auth::{Answer, Layout, Scripted};
use crate::support::client::{connect_tls, send_plain, tls_config};
use crate::support::upstream::Recorded;
use crate::support::{
    Body, Resp, TestGateway, Upstream, empty, full, route_toml, upstream_toml, within,
};

/// `[auth.external]` caching allows and denials for a minute.
const CACHE: &str = "cache_ttl = \"60s\"\nnegative_cache_ttl = \"60s\"";
/// `[auth.external]` caching nothing: every request asks.
const NO_CACHE: &str = "cache_ttl = \"0s\"\nnegative_cache_ttl = \"0s\"";
/// `[server]` without file watching: these tests count auth calls, and a reload (which empties
/// the cache) must happen only when a test asks for one.
const SERVER: &str =
    "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nwatch_files = false\n";
/// A failure limit no test reaches by accident (a table, valid whatever the default is).
const NO_FAILURE_LIMIT: &str = "failure_limit = { rate = \"100000/s\", burst = 100000 }";
/// Two failed attempts, then 429 for a minute.
const TWO_FAILURES: &str = "failure_limit = { rate = \"1/min\", burst = 2 }";

/// A gateway whose `/api` is `auth = ["external"]` against `url` (GET, forwarding x-token,
/// copying x-user), `auth_extra` in `[auth]`, `external_extra` in `[auth.external]`, and
/// `routes_extra` after the `/api` route's keys.
async fn external_gateway(
    url: &str,
    auth_extra: &str,
    external_extra: &str,
    route_extra: &str,
) -> (TestGateway, Upstream) {
    let up = Upstream::echo().await;
    let config = format!(
        "{SERVER}\n[auth]\n{auth_extra}\n\n[auth.external]\nurl = \"{url}\"\nforward_headers = [\"x-token\"]\n\
         copy_headers = [\"x-user\"]\ntimeout = \"2s\"\n{external_extra}\n{}\
         \n[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = [\"external\"]\n{route_extra}\n{}",
        upstream_toml("api-service", &[up.addr], ""),
        route_toml("/public", "api-service", ""),
    );
    let gw = Layout::new().start(&config).await;
    quiet(&gw).await;
    (gw, up)
}

/// Returns once no reload is pending: the startup rescan is a reload too and empties the cache,
/// so tests that count auth calls start after it. An explicit reload completes only after any
/// reload queued before it.
async fn quiet(gw: &TestGateway) {
    let outcome = within("a reload", gw.gateway().reload()).await;
    assert!(
        matches!(outcome, ReloadOutcome::Unchanged { .. }),
        "{outcome:?}"
    );
}

/// An auth service answering with `decide(request)`, recording every request.
async fn auth_service(decide: impl Fn(&Recorded) -> Answer + Send + Sync + 'static) -> Upstream {
    Upstream::spawn(move |request| {
        let answer = decide(request);
        let mut response = Response::builder().status(answer.status);
        for (name, value) in &answer.headers {
            response = response.header(name.as_str(), value.as_str());
        }
        response.body(full(answer.body)).unwrap()
    })
    .await
}

/// `method path` over HTTPS/1.1 with `headers`.
async fn send(gw: &TestGateway, method: Method, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    gw.client().send(request.body(empty()).unwrap()).await
}

fn token(value: &str) -> [(&str, &str); 1] {
    [("x-token", value)]
}

/// One h2 connection to the gateway, for many requests without a handshake each.
async fn h2_connection(gw: &TestGateway) -> SendRequest<Body> {
    let tls = within(
        "TLS connect",
        connect_tls(
            gw.https,
            "localhost",
            tls_config(&[b"h2"], rustls::ALL_VERSIONS),
        ),
    )
    .await
    .unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// `GET path` with `x-token: token` on `sender`; the status.
async fn h2_get(sender: &mut SendRequest<Body>, authority: &str, path: &str, token: &str) -> u16 {
    let request = Request::get(format!("https://{authority}{path}"))
        .header("x-token", token)
        .body(empty())
        .unwrap();
    sender.ready().await.unwrap();
    let response = within("h2 response", sender.send_request(request))
        .await
        .unwrap();
    let status = response.status().as_u16();
    http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    status
}

// --------------------------------------------------------------- §8.2 the decision cache

/// GET /reports with a token is allowed; DELETE /admin with the same token is not. The cache
/// must not turn the first answer into the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_for_get_reports_is_not_reused_for_delete_admin() {
    let auth = auth_service(|r| {
        let get_reports = r.header("x-forwarded-method") == Some("GET")
            && r.header("x-forwarded-uri") == Some("/api/reports");
        Answer::status(if get_reports { 200 } else { 403 }).header("x-user", "alice")
    })
    .await;
    let url = format!("http://{}/check", auth.addr);
    let (gw, up) = external_gateway(&url, NO_FAILURE_LIMIT, CACHE, "").await;

    let reports = send(&gw, Method::GET, "/api/reports", &token("t-alice")).await;
    assert_eq!(reports.status, 200, "{}", reports.text());
    let admin = send(&gw, Method::DELETE, "/api/admin", &token("t-alice")).await;
    assert_eq!(admin.status, 403, "{}", admin.text());
    assert_eq!(auth.count(), 2, "the auth service decided each request");
    let seen = auth.requests();
    assert_eq!(seen[1].header("x-forwarded-method"), Some("DELETE"));
    assert_eq!(seen[1].header("x-forwarded-uri"), Some("/api/admin"));
    assert_eq!(up.count(), 1);
    assert_eq!(
        up.requests()[0].method,
        Method::GET,
        "the DELETE never reached the upstream"
    );

    // Each decision is still cached for its own request.
    assert_eq!(
        send(&gw, Method::GET, "/api/reports", &token("t-alice"))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&gw, Method::DELETE, "/api/admin", &token("t-alice"))
            .await
            .status,
        403
    );
    assert_eq!(auth.count(), 2);
}

/// A denial for one path is not served for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_not_reused_across_paths() {
    let auth = auth_service(|r| {
        let admin = r
            .header("x-forwarded-uri")
            .is_some_and(|u| u.starts_with("/api/admin"));
        Answer::status(if admin { 401 } else { 200 })
    })
    .await;
    let url = format!("http://{}/check", auth.addr);
    let (gw, _up) = external_gateway(&url, NO_FAILURE_LIMIT, CACHE, "").await;

    assert_eq!(
        send(&gw, Method::GET, "/api/admin", &token("t"))
            .await
            .status,
        401
    );
    let reports = send(&gw, Method::GET, "/api/reports", &token("t")).await;
    assert_eq!(reports.status, 200, "{}", reports.text());
    // Another query is another request too.
    assert_eq!(
        send(&gw, Method::GET, "/api/admin?x=1", &token("t"))
            .await
            .status,
        401
    );
    assert_eq!(auth.count(), 3);
}

/// `cache_key = "credential"`: one decision per credential, whatever the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_mode_reuses_one_decision_for_every_request() {
    let auth = Scripted::start(Answer::status(200).header("x-user", "keptn")).await;
    let external = format!("{CACHE}\ncache_key = \"credential\"");
    let (gw, up) = external_gateway(&auth.url("/check"), NO_FAILURE_LIMIT, &external, "").await;

    for (method, path) in [
        (Method::GET, "/api/reports"),
        (Method::DELETE, "/api/admin"),
        (Method::GET, "/api/other?q=1"),
    ] {
        let resp = send(&gw, method, path, &token("keptn-token")).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert_eq!(auth.calls(), 1, "decided on x-token alone");
    assert_eq!(
        send(&gw, Method::GET, "/api/reports", &token("other"))
            .await
            .status,
        200
    );
    assert_eq!(auth.calls(), 2, "another credential asks again");
    assert_eq!(up.count(), 4);
}

/// `POST /reload` with nothing changed still empties the cache: the next request asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_with_nothing_changed_empties_the_cache() {
    let auth = Scripted::start(Answer::status(200)).await;
    let (gw, _up) = external_gateway(&auth.url("/check"), NO_FAILURE_LIMIT, CACHE, "").await;

    for _ in 0..2 {
        assert_eq!(
            send(&gw, Method::GET, "/api/x", &token("t")).await.status,
            200
        );
    }
    assert_eq!(auth.calls(), 1);
    let admin = gw.admin.expect("admin listener");
    let reload = send_plain(
        admin,
        Request::post("/reload")
            .header("host", "admin")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(
        reload.json()["changed"],
        false,
        "nothing changed: {}",
        reload.text()
    );

    assert_eq!(
        send(&gw, Method::GET, "/api/x", &token("t")).await.status,
        200
    );
    assert_eq!(auth.calls(), 2, "the reload emptied the cache");
    assert_eq!(
        send(&gw, Method::GET, "/api/x", &token("t")).await.status,
        200
    );
    assert_eq!(auth.calls(), 2, "and it caches again");
}

/// More unknown credentials than the cache holds, each denied and cached: the good token's
/// allow survives, so the auth service is not asked about it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_unknown_credentials_keeps_a_cached_allow() {
    /// More than the 10 000 decisions the cache held in all before the fix.
    const FLOOD: usize = 10_050;
    const WORKERS: usize = 16;
    let auth = auth_service(|r| {
        Answer::status(if r.header("x-token") == Some("good") {
            200
        } else {
            401
        })
    })
    .await;
    let url = format!("http://{}/check", auth.addr);
    let (gw, _up) = external_gateway(&url, NO_FAILURE_LIMIT, CACHE, "").await;
    let authority = format!("localhost:{}", gw.https.port());

    let mut sender = h2_connection(&gw).await;
    assert_eq!(h2_get(&mut sender, &authority, "/api/x", "good").await, 200);
    assert_eq!(auth.count(), 1);
    assert_eq!(h2_get(&mut sender, &authority, "/api/x", "good").await, 200);
    assert_eq!(auth.count(), 1);

    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let mut sender = sender.clone();
        let next = next.clone();
        let authority = authority.clone();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= FLOOD {
                    return;
                }
                let status = h2_get(&mut sender, &authority, "/api/x", &format!("guess-{i}")).await;
                assert_eq!(status, 401, "guess {i}");
            }
        });
    }
    tokio::time::timeout(std::time::Duration::from_secs(300), async {
        while let Some(done) = workers.join_next().await {
            done.unwrap();
        }
    })
    .await
    .expect("the flood finishes in time");
    assert_eq!(auth.count(), 1 + FLOOD);

    assert_eq!(h2_get(&mut sender, &authority, "/api/x", "good").await, 200);
    assert_eq!(
        auth.count(),
        1 + FLOOD,
        "the good token's allow was still cached"
    );
}

// --------------------------------------------------------------- §8.3 external identities

/// Two callers the auth service names nobody for are still two identities: distinct
/// `x-auth-subject`s upstream, and separate identity-keyed rate-limit budgets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_callers_without_copy_headers_are_distinct_identities() {
    let auth = Scripted::start(Answer::status(200)).await;
    let (gw, up) = external_gateway(
        &auth.url("/check"),
        NO_FAILURE_LIMIT,
        NO_CACHE,
        "rate_limit = \"per-caller\"\n\n[rate_limits.per-caller]\nkey = \"identity\"\nrate = \"1/min\"\nburst = 1\n",
    )
    .await;

    let first = send(&gw, Method::GET, "/api/x", &token("token-one")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let second = send(&gw, Method::GET, "/api/x", &token("token-two")).await;
    assert_eq!(
        second.status,
        200,
        "another caller has its own budget: {}",
        second.text()
    );
    let again = send(&gw, Method::GET, "/api/x", &token("token-one")).await;
    assert_eq!(again.status, 429, "the first caller's budget is spent");

    let got = up.requests();
    assert_eq!(got.len(), 2);
    let subjects: Vec<&str> = got
        .iter()
        .map(|r| r.header("x-auth-subject").unwrap())
        .collect();
    assert_ne!(subjects[0], subjects[1]);
    for subject in &subjects {
        let hash = subject.strip_prefix("external:").expect("external:<hash>");
        assert_eq!(hash.len(), 12, "{subject}");
        assert!(
            !subject.contains("token"),
            "never the credential: {subject}"
        );
    }
}

/// Without any credential the caller is anonymous: rate-limited by client IP, not as one
/// identity shared by every anonymous caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_external_callers_are_limited_by_ip() {
    let auth = Scripted::start(Answer::status(200)).await;
    let up = Upstream::echo().await;
    let config = format!(
        "{SERVER}trusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [auth]\n{NO_FAILURE_LIMIT}\n\n[auth.external]\nurl = \"{}\"\nforward_headers = [\"x-token\"]\n{NO_CACHE}\n{}\
         \n[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = [\"external\"]\nrate_limit = \"per-caller\"\n\
         \n[rate_limits.per-caller]\nkey = \"identity\"\nrate = \"1/min\"\nburst = 1\n",
        auth.url("/check"),
        upstream_toml("api-service", &[up.addr], ""),
    );
    let gw = Layout::new().start(&config).await;
    quiet(&gw).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];

    assert_eq!(
        send(&gw, Method::GET, "/api/x", &from("192.0.2.1"))
            .await
            .status,
        200
    );
    let other = send(&gw, Method::GET, "/api/x", &from("192.0.2.2")).await;
    assert_eq!(
        other.status,
        200,
        "another IP, another budget: {}",
        other.text()
    );
    assert_eq!(
        send(&gw, Method::GET, "/api/x", &from("192.0.2.1"))
            .await
            .status,
        429
    );
    assert_eq!(up.requests()[0].header("x-auth-subject"), Some("anonymous"));
}

/// 401s from the auth service are failed attempts: past `failure_limit` the client gets 429
/// and the auth service is not asked any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_service_401s_count_toward_failure_limit() {
    let auth = Scripted::start(Answer::status(401).body("bad token")).await;
    let (gw, up) = external_gateway(&auth.url("/check"), TWO_FAILURES, NO_CACHE, "").await;

    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for guess in ["guess-1", "guess-2", "guess-3"] {
            statuses.push(
                send(&gw, Method::GET, "/api/x", &token(guess))
                    .await
                    .status
                    .as_u16(),
            );
        }
        statuses
    };
    assert_eq!(statuses, [401, 401, 429]);
    assert_eq!(auth.calls(), 3);

    let blocked = send(&gw, Method::GET, "/api/x", &token("guess-4")).await;
    assert_eq!(blocked.error(429), "too many failed attempts");
    assert!(blocked.header("retry-after").is_some());
    assert_eq!(
        auth.calls(),
        3,
        "a blocked client costs the auth service nothing"
    );
    assert_eq!(up.count(), 0);
}

// --------------------------------------------------------------- §8.8 admin tokens

/// Off loopback, refused admin tokens count toward `failure_limit` like any other token; once
/// over it even the right token gets 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_tokens_hit_failure_limit() {
    let layout = Layout::new();
    let admin_token = layout.mint("ops", &["admin"]);
    let gw = layout
        .start(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"0.0.0.0:0\"\n\n[auth]\ntokens = \"tokens.toml\"\n{TWO_FAILURES}\n"
        ))
        .await;
    let admin = SocketAddr::from(([127, 0, 0, 1], gw.admin.expect("admin listener").port()));
    let config = |token: &str| {
        Request::get("/config")
            .header("host", "admin")
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .unwrap()
    };

    assert_eq!(send_plain(admin, config(&admin_token)).await.status, 200);
    for guess in ["guess-1", "guess-2"] {
        assert_eq!(
            send_plain(admin, config(guess)).await.error(401),
            "invalid token"
        );
    }
    let over = send_plain(admin, config("guess-3")).await;
    assert_eq!(over.error(429), "too many failed attempts");
    let blocked = send_plain(admin, config(&admin_token)).await;
    assert_eq!(blocked.error(429), "too many failed attempts");
    assert!(blocked.header("retry-after").is_some());
}

// --------------------------------------------------------------- §8.12 userinfo in the URL

/// `url = "http://user:password@host/..."` is accepted, sent as `Authorization: Basic`, and the
/// password never shows in `/config`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_url_with_userinfo_is_used_and_never_shown() {
    let auth = Scripted::start(Answer::status(200).header("x-user", "alice")).await;
    let url = format!("http://gatehouse:pw-s3cret@{}/check", auth.server.addr);
    let (gw, up) = external_gateway(&url, NO_FAILURE_LIMIT, NO_CACHE, "").await;

    let resp = send(&gw, Method::GET, "/api/x", &token("t")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let asked = auth.server.single_request();
    // base64("gatehouse:pw-s3cret")
    assert_eq!(
        asked.header("authorization"),
        Some("Basic Z2F0ZWhvdXNlOnB3LXMzY3JldA==")
    );
    assert_eq!(asked.uri, "/check");
    assert_eq!(
        asked.header("host"),
        Some(auth.server.addr.to_string().as_str())
    );
    assert_eq!(up.single_request().header("authorization"), None);

    let config = gw.admin_get("/config").await;
    assert_eq!(config.status, 200);
    assert!(!config.text().contains("pw-s3cret"), "{}", config.text());
}

/// `cache_key` takes `"request"` or `"credential"`; anything else is a config error naming the
/// key, so a typo never silently caches by credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_cache_key_is_refused() {
    let config = "[auth.external]\nurl = \"http://127.0.0.1:9/check\"\ncache_key = \"token\"\n\
                  \n[[upstreams]]\nname = \"api-service\"\ntargets = [\"127.0.0.1:9\"]\n\
                  \n[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = [\"external\"]\n";
    let Err((error, _)) = TestGateway::try_start(config).await else {
        panic!("cache_key = \"token\" was accepted");
    };
    let error = format!("{error:#}");
    assert!(error.contains("auth.external.cache_key"), "{error}");
    assert!(error.contains("\"request\" or \"credential\""), "{error}");
}
