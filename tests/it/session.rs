//! Browser sessions (issue 13 part 1, SPEC §2 `[auth.session]`): login exchanges a token for an
//! HttpOnly cookie, the cookie alone then authenticates on routes that list `"session"`, logout
//! ends it. Also: revocation, tampering, expiry, CSRF, key rotation, failure_limit, scope, and
//! that the cookie never reaches an upstream. Real TLS, real HTTP/1.1 and h2, recording upstreams.

use std::time::{Duration, Instant};

use gatehouse::auth::session::cookie::{self, Claims, SessionId};
use http::Request;
use serde_json::json;

use crate::support::auth::{
    Answer, CHALLENGE, INVALID_TOKEN_CHALLENGE, Layout, Scripted, assert_identity,
};
use crate::support::files::save_atomically;
use crate::support::reload::{settle, wait_generation};
use crate::support::{Body, Resp, TestGateway, Upstream, empty, full, upstream_toml, within};

/// The session key every test starts with (44 bytes, as `head -c 32 /dev/urandom | base64`).
const KEY_1: &str = "c2Vzc2lvbi1rZXktb25lLWZvci10ZXN0cy0wMDAwMDA=\n";
const KEY_2: &str = "c2Vzc2lvbi1rZXktdHdvLWZvci10ZXN0cy0wMDAwMDA=\n";
const KEY_3: &str = "c2Vzc2lvbi1rZXktdGhyZWUtZm9yLXRlc3RzLTAwMDA=\n";

/// The cookie name the tests configure.
const COOKIE: &str = "gatehouse_session";

// ------------------------------------------------------------------------------------ helpers

/// A gateway with a token store, `[auth.session]` (ttl `ttl`, key [`KEY_1`]) and `up` behind:
/// `/api` accepts session and token (reads: viewer, writes: operator), `/tok` token only, and
/// `/pub` is public. `auth_extra` goes under `[auth]`.
async fn start(layout: Layout, up: &Upstream, ttl: &str, auth_extra: &str) -> TestGateway {
    layout.write("secrets/session.key", KEY_1);
    layout
        .start(&format!(
            "[auth]\ntokens = \"tokens.toml\"\n{auth_extra}\n\n\
             [auth.session]\nsecret_file = \"secrets/session.key\"\nttl = \"{ttl}\"\n\n{}\n\
             [[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = [\"session\", \"token\"]\n\
             roles = [\"viewer\"]\nwrite_roles = [\"operator\"]\n\n\
             [[routes]]\npath = \"/tok\"\nupstream = \"api-service\"\nauth = [\"token\"]\n\n\
             [[routes]]\npath = \"/pub\"\nupstream = \"api-service\"\nauth = [\"public\"]\n",
            upstream_toml("api-service", &[up.addr], "")
        ))
        .await
}

/// `https://localhost:PORT`, the gateway's own origin as a browser sends it.
fn origin(gw: &TestGateway) -> String {
    format!("https://{}", gw.client().authority())
}

/// `POST /auth/login` with `Authorization: Bearer token`.
async fn login(gw: &TestGateway, token: &str) -> Resp {
    let req = Request::post("/auth/login")
        .header("authorization", format!("Bearer {token}"))
        .body(empty())
        .unwrap();
    gw.client().send(req).await
}

/// Logs in and returns the cookie value, checking the exact `Set-Cookie` attributes.
async fn login_cookie(gw: &TestGateway, token: &str, max_age: u64) -> String {
    let resp = login(gw, token).await;
    assert_eq!(resp.status, 200, "login: {}", resp.text());
    cookie_of(&resp, max_age)
}

/// The cookie value of `resp`'s `Set-Cookie`, which must be exactly the session cookie with
/// `Max-Age=max_age` and the required attributes.
fn cookie_of(resp: &Resp, max_age: u64) -> String {
    let set = resp.header("set-cookie").expect("a Set-Cookie");
    let (pair, attributes) = set.split_once("; ").expect("attributes");
    assert_eq!(
        attributes,
        format!("Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Strict"),
        "{set}"
    );
    let value = pair
        .strip_prefix(&format!("{COOKIE}="))
        .unwrap_or_else(|| panic!("cookie name in {set}"));
    assert!(!value.is_empty());
    value.to_owned()
}

/// A request to `path` with `method`, the session cookie `value` and extra headers.
fn with_cookie(method: &str, path: &str, value: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("cookie", format!("theme=dark; {COOKIE}={value}; lang=en"));
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let body = if method == "GET" { empty() } else { full("{}") };
    req.body(body).unwrap()
}

async fn get_with_cookie(gw: &TestGateway, path: &str, value: &str) -> Resp {
    gw.client().send(with_cookie("GET", path, value, &[])).await
}

/// Polls `GET /api/x` with the cookie until it is refused (bounded); returns the refusal.
async fn refused_within(gw: &TestGateway, value: &str, bound: Duration) -> (Resp, Duration) {
    let start = Instant::now();
    loop {
        let resp = get_with_cookie(gw, "/api/x", value).await;
        if resp.status == 401 {
            return (resp, start.elapsed());
        }
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert!(
            start.elapsed() < bound,
            "session still accepted after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// -------------------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_the_cookie_which_alone_authenticates_until_logout() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["operator"]);
    let gw = start(layout, &up, "1h", "").await;

    let resp = login(&gw, &token).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let value = cookie_of(&resp, 3600);
    assert!(
        !value.contains(&token) && !value.contains("web-ui"),
        "{value}"
    );
    let body = resp.json();
    assert_eq!(body["subject"], "web-ui");
    assert_eq!(body["roles"], json!(["operator"]));
    assert_eq!(body["method"], "session");
    assert!(body["expires"].as_str().unwrap().ends_with('Z'), "{body}");
    assert_eq!(up.count(), 0, "login never reaches an upstream");

    // The cookie alone, over HTTP/1.1 and h2: identity headers upstream, cookie stripped.
    let resp = get_with_cookie(&gw, "/api/x", &value).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = up.single_request();
    assert_identity(&got, "web-ui", "operator", "session");
    assert_eq!(got.header_all("cookie"), ["theme=dark; lang=en"]);
    assert_eq!(got.header("authorization"), None);
    let resp = gw
        .h2_client()
        .send(
            Request::get("/api/y")
                .header("cookie", "theme=dark")
                .header("cookie", format!("{COOKIE}={value}"))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = &up.wait_for_requests(2).await[1];
    assert_identity(got, "web-ui", "operator", "session");
    assert!(
        got.header_all("cookie").iter().all(|c| !c.contains(COOKIE)),
        "{:?}",
        got.headers
    );

    let resp = get_with_cookie(&gw, "/auth/session", &value).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let session = resp.json();
    assert_eq!(session["subject"], "web-ui");
    assert_eq!(session["roles"], json!(["operator"]));
    assert_eq!(session["method"], "session");
    assert_eq!(session["expires"], body["expires"]);

    let resp = gw
        .client()
        .send(with_cookie(
            "POST",
            "/auth/logout",
            &value,
            &[("origin", &origin(&gw))],
        ))
        .await;
    assert_eq!(resp.status, 204);
    assert_eq!(
        resp.header("set-cookie"),
        Some("gatehouse_session=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict")
    );

    let resp = get_with_cookie(&gw, "/api/x", &value).await;
    assert_eq!(resp.error(401), "invalid token");
    assert_eq!(
        resp.header("www-authenticate"),
        Some(INVALID_TOKEN_CHALLENGE)
    );
    let resp = get_with_cookie(&gw, "/auth/session", &value).await;
    assert_eq!(resp.error(401), "invalid token");
    assert_eq!(up.count(), 2, "nothing reached the upstream after logout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_takes_a_json_body_and_refuses_bad_ones() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["viewer"]);
    let gw = start(layout, &up, "1h", "").await;
    let post = |body: Body| {
        Request::post("/auth/login")
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    };

    let resp = gw
        .client()
        .send(post(full(json!({ "token": token }).to_string())))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let value = cookie_of(&resp, 3600);
    assert_eq!(get_with_cookie(&gw, "/api/x", &value).await.status, 200);

    // Malformed JSON: 400, and the body (a half-pasted token) is never echoed.
    let resp = gw
        .client()
        .send(post(full("{\"token\": \"gth_half-pasted-secret")))
        .await;
    assert!(resp.error(400).starts_with("bad request"));
    assert!(!resp.text().contains("half-pasted"), "{}", resp.text());
    let resp = gw
        .client()
        .send(post(full(format!(
            "{{\"token\": \"{}\"}}",
            "x".repeat(9000)
        ))))
        .await;
    assert_eq!(resp.status, 413);
    let resp = gw.client().send(post(empty())).await;
    assert_eq!(resp.error(401), "missing credentials");
    assert_eq!(resp.header("www-authenticate"), Some(CHALLENGE));
    for resp in [
        gw.client().send(post(full("{\"token\": \"\"}"))).await,
        gw.get("/auth/login").await,
    ] {
        assert!(resp.header("set-cookie").is_none());
        assert_ne!(resp.status, 200);
    }
    assert_eq!(gw.get("/auth/login").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_ends_its_session_within_the_reload_bound() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["viewer"]);
    let other = layout.mint("other", &["viewer"]);
    let store = layout.path("tokens.toml");
    let gw = start(layout, &up, "1h", "").await;
    let value = login_cookie(&gw, &token, 3600).await;
    let kept = login_cookie(&gw, &other, 3600).await;
    assert_eq!(get_with_cookie(&gw, "/api/x", &value).await.status, 200);
    let before = settle(&gw).await;

    let revoked_at = Instant::now();
    gatehouse::token_cmd::revoke(&store, "web-ui").unwrap();
    let (resp, _) = refused_within(&gw, &value, Duration::from_secs(5)).await;
    let took = revoked_at.elapsed();
    assert_eq!(resp.error(401), "invalid token");
    wait_generation(&gw, before.generation).await;
    eprintln!("session of a revoked token refused {took:?} after the store write");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The other token's session is untouched by the reload.
    assert_eq!(get_with_cookie(&gw, "/api/x", &kept).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_foreign_cookies_get_401() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["viewer"]);
    let gw = start(layout, &up, "1h", "").await;
    let value = login_cookie(&gw, &token, 3600).await;

    let mut tampered = value.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let foreign = cookie::encode(
        &Claims {
            id: SessionId([9; 16]),
            expires,
        },
        KEY_2.trim_end().as_bytes(),
    );
    // The same session id and expiry re-signed with another key: the id alone is not enough.
    let parsed = cookie::parse(&value).unwrap();
    let resigned = cookie::encode(&parsed.claims, KEY_2.trim_end().as_bytes());
    for bad in [tampered, foreign, resigned, "garbage".to_owned()] {
        let resp = get_with_cookie(&gw, "/api/x", &bad).await;
        assert_eq!(resp.error(401), "invalid token", "{bad}");
    }
    assert_eq!(up.count(), 0, "no forged cookie reached the upstream");
    assert_eq!(get_with_cookie(&gw, "/api/x", &value).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_with_their_ttl_and_never_outlive_their_token() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["viewer"]);
    let short = "short-lived-token-0123456789";
    let ends = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let ends = ends
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    layout.add_token(
        "short",
        short,
        &["viewer"],
        &format!("expires = \"{ends}\""),
    );
    let gw = start(layout, &up, "1s", "").await;

    let value = login_cookie(&gw, &token, 1).await;
    let (resp, _) = refused_within(&gw, &value, Duration::from_secs(5)).await;
    assert!(
        resp.error(401).starts_with("token expired at "),
        "{}",
        resp.text()
    );

    // ttl 1h on the same store: a token that ends in 3 s gives a cookie of at most 3 s.
    let up2 = Upstream::echo().await;
    let layout = Layout::new();
    layout.add_token(
        "short",
        short,
        &["viewer"],
        &format!("expires = \"{ends}\""),
    );
    let gw = start(layout, &up2, "1h", "").await;
    let resp = login(&gw, short).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let set = resp.header("set-cookie").unwrap();
    let max_age: u64 = set
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&max_age), "{set}");
    assert_eq!(resp.json()["expires"], ends.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_writes_need_the_same_origin() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["operator"]);
    let gw = start(layout, &up, "1h", "").await;
    let value = login_cookie(&gw, &token, 3600).await;
    let own = origin(&gw);

    for extra in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[("origin", own.replace("https", "http").as_str())][..],
        &[("sec-fetch-site", "cross-site")][..],
        &[][..],
    ] {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let resp = gw
                .client()
                .send(with_cookie(method, "/api/x", &value, extra))
                .await;
            assert_eq!(resp.error(403), "origin not allowed", "{method} {extra:?}");
        }
    }
    assert_eq!(up.count(), 0, "no cross-site write reached the upstream");

    for extra in [
        &[("origin", own.as_str())][..],
        &[("sec-fetch-site", "same-origin")][..],
    ] {
        let resp = gw
            .client()
            .send(with_cookie("POST", "/api/x", &value, extra))
            .await;
        assert_eq!(resp.status, 200, "{extra:?}: {}", resp.text());
    }
    // Reads need no proof; a bearer token is not a cookie and needs none either.
    assert_eq!(get_with_cookie(&gw, "/api/x", &value).await.status, 200);
    let resp = gw
        .client()
        .send(
            Request::post("/api/x")
                .header("authorization", format!("Bearer {token}"))
                .header("origin", "https://evil.example")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_identity(
        &up.wait_for_requests(4).await[3],
        "web-ui",
        "operator",
        "token",
    );

    // Login and logout refuse a foreign Origin too; the refused login sets no cookie.
    let resp = gw
        .client()
        .send(
            Request::post("/auth/login")
                .header("authorization", format!("Bearer {token}"))
                .header("origin", "https://evil.example")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.error(403), "origin not allowed");
    assert!(resp.header("set-cookie").is_none());
    let resp = gw
        .client()
        .send(with_cookie(
            "POST",
            "/auth/logout",
            &value,
            &[("origin", "https://evil.example")],
        ))
        .await;
    assert_eq!(resp.error(403), "origin not allowed");
    assert_eq!(get_with_cookie(&gw, "/api/x", &value).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_sessions_of_the_previous_key_only() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["viewer"]);
    let key = layout.path("secrets/session.key");
    let gw = start(layout, &up, "1h", "").await;
    let first = login_cookie(&gw, &token, 3600).await;
    let before = settle(&gw).await;

    save_atomically(&key, KEY_2);
    let status = wait_generation(&gw, before.generation).await;
    assert_eq!(
        get_with_cookie(&gw, "/api/x", &first).await.status,
        200,
        "a cookie of the previous key is accepted for one ttl"
    );
    let second = login_cookie(&gw, &token, 3600).await;
    assert_ne!(
        cookie::parse(&second).unwrap().claims,
        cookie::parse(&first).unwrap().claims
    );

    save_atomically(&key, KEY_3);
    wait_generation(&gw, status.generation).await;
    assert_eq!(get_with_cookie(&gw, "/api/x", &second).await.status, 200);
    let resp = get_with_cookie(&gw, "/api/x", &first).await;
    assert_eq!(
        resp.error(401),
        "invalid token",
        "two rotations ago: no longer accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_set_no_cookie_and_count_toward_failure_limit() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["viewer"]);
    let gw = start(
        layout,
        &up,
        "1h",
        "failure_limit = { rate = \"1/min\", burst = 2 }",
    )
    .await;
    for guess in ["gth_wrong", "not-a-token"] {
        let resp = login(&gw, guess).await;
        assert_eq!(resp.error(401), "invalid token");
        assert!(resp.header("set-cookie").is_none());
    }
    let resp = login(&gw, "third-guess").await;
    assert_eq!(resp.error(429), "too many failed attempts");
    assert!(resp.header("retry-after").is_some());
    // Blocked means blocked: a valid login, and a valid token on a route, from the same IP.
    let resp = login(&gw, &token).await;
    assert_eq!(resp.error(429), "too many failed attempts");
    assert!(resp.header("set-cookie").is_none());
    let resp = gw
        .client()
        .send(
            Request::get("/tok/x")
                .header("x-token", &token)
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.error(429), "too many failed attempts");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cookies_count_toward_failure_limit_but_stale_ones_do_not() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["viewer"]);
    let gw = start(
        layout,
        &up,
        "1h",
        "failure_limit = { rate = \"1/min\", burst = 2 }",
    )
    .await;
    let value = login_cookie(&gw, &token, 3600).await;
    let resp = gw
        .client()
        .send(with_cookie(
            "POST",
            "/auth/logout",
            &value,
            &[("sec-fetch-site", "same-origin")],
        ))
        .await;
    assert_eq!(resp.status, 204);
    // A logged-out cookie, sent again and again (a browser tab polling): 401, never 429.
    for _ in 0..4 {
        let resp = get_with_cookie(&gw, "/api/x", &value).await;
        assert_eq!(resp.error(401), "invalid token");
    }
    for _ in 0..2 {
        let resp = get_with_cookie(&gw, "/api/x", "forged.value").await;
        assert_eq!(resp.error(401), "invalid token");
    }
    let resp = get_with_cookie(&gw, "/api/x", "forged.value").await;
    assert_eq!(resp.error(429), "too many failed attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_no_credential_on_routes_without_session_and_never_goes_upstream() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["admin"]);
    let gw = start(layout, &up, "1h", "").await;
    let value = login_cookie(&gw, &token, 3600).await;

    let resp = get_with_cookie(&gw, "/tok/x", &value).await;
    assert_eq!(resp.error(401), "missing credentials");
    assert_eq!(resp.header("www-authenticate"), Some(CHALLENGE));
    assert_eq!(up.count(), 0);

    // A public route: served, anonymous, and the upstream gets the other cookies only.
    let resp = get_with_cookie(&gw, "/pub/x", &value).await;
    assert_eq!(resp.status, 200);
    let got = up.single_request();
    assert_eq!(got.header_all("cookie"), ["theme=dark; lang=en"]);
    assert_eq!(got.header("x-auth-subject"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_identity_feeds_roles_and_rate_limits() {
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let viewer = layout.mint("viewer-ui", &["viewer"]);
    layout.write("secrets/session.key", KEY_1);
    let gw = layout
        .start(&format!(
            "[auth]\ntokens = \"tokens.toml\"\n\n\
             [auth.session]\nsecret_file = \"secrets/session.key\"\n\n\
             [rate_limits.per_caller]\nkey = \"identity\"\nrate = \"1/min\"\nburst = 1\n\n{}\n\
             [[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nroles = [\"viewer\"]\n\
             write_roles = [\"operator\"]\nrate_limit = \"per_caller\"\n",
            upstream_toml("api-service", &[up.addr], "")
        ))
        .await;
    // No `auth` on the route: every configured kind, session included (SPEC §8.4).
    let value = login_cookie(&gw, &viewer, 12 * 3600).await;
    let resp = gw
        .client()
        .send(with_cookie(
            "POST",
            "/api/x",
            &value,
            &[("sec-fetch-site", "same-origin")],
        ))
        .await;
    assert_eq!(resp.error(403), "role operator required");
    let resp = get_with_cookie(&gw, "/api/x", &value).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = get_with_cookie(&gw, "/api/x", &value).await;
    assert_eq!(resp.error(429), "rate limit exceeded");
    // The same identity by its token shares the budget: it is the same caller.
    let resp = gw
        .client()
        .send(
            Request::get("/api/x")
                .header("x-token", &viewer)
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.error(429), "rate limit exceeded");
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_rules_for_sessions() {
    let up = Upstream::echo().await;
    let routes = format!(
        "{}\n[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = [\"session\"]\n",
        upstream_toml("api-service", &[up.addr], "")
    );
    let error = within(
        "start",
        TestGateway::try_start(&format!("[auth]\ntokens = \"t.toml\"\n{routes}")),
    )
    .await
    .err()
    .expect("a session route without [auth.session] is refused");
    let text = format!("{:#}", error.0);
    assert!(
        text.contains("routes[0].auth[0]") && text.contains("needs an [auth.session] section"),
        "{text}"
    );
    // A key file that is too short is refused, and its content never printed.
    let layout = Layout::new();
    layout.write("s.key", "tiny-secret-value");
    let path = layout.path("gateway.toml");
    std::fs::write(
        &path,
        crate::support::gateway::compose_config(&format!(
            "[auth]\ntokens = \"tokens.toml\"\n\n[auth.session]\nsecret_file = \"s.key\"\n{routes}"
        )),
    )
    .unwrap();
    std::fs::write(layout.path("tokens.toml"), "").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("auth.session.secret_file"), "{text}");
    assert!(!text.contains("tiny-secret-value"), "{text}");
    // With a good key, `check` shows the session settings, never the key.
    layout.write("s.key", KEY_1);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "session       cookie gatehouse_session, ttl 43200s, /auth/login|session|logout"
        ),
        "{text}"
    );
    assert!(!text.contains(KEY_1.trim_end()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_external_auth_service_never_sees_the_session_cookie() {
    let auth = Scripted::start(Answer::status(204)).await;
    let up = Upstream::echo().await;
    let layout = Layout::new();
    let token = layout.mint("web-ui", &["viewer"]);
    layout.write("secrets/session.key", KEY_1);
    let gw = layout
        .start(&format!(
            "[auth]\ntokens = \"tokens.toml\"\n\n\
             [auth.session]\nsecret_file = \"secrets/session.key\"\n\n\
             [auth.external]\nurl = \"{}\"\nforward_headers = [\"cookie\"]\ncache_ttl = \"0s\"\n\n{}\n\
             [[routes]]\npath = \"/ext\"\nupstream = \"api-service\"\nauth = [\"external\"]\n",
            auth.url("/v1/auth"),
            upstream_toml("api-service", &[up.addr], "")
        ))
        .await;
    let value = login_cookie(&gw, &token, 12 * 3600).await;
    let resp = get_with_cookie(&gw, "/ext/x", &value).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let asked = auth.server.single_request();
    assert_eq!(asked.header_all("cookie"), ["theme=dark; lang=en"]);
    let got = up.single_request();
    assert_eq!(got.header_all("cookie"), ["theme=dark; lang=en"]);
    assert_eq!(got.header("x-auth-method"), Some("external"));
}
