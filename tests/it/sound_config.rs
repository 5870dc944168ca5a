//! Configs fail closed and never echo secrets (SPEC §8.4, §8.12, the `[server] hsts` key of
//! §8.11), and `examples/keptn.toml` keeps the NGINX defaults Keptn relied on (issue 9 fault 14).
//!
//! Config rules are checked through `gatehouse check` (exit code and the `file: key: reason`
//! line) and, where the rule is about what a request gets, against a live gateway.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use http::{Request, StatusCode};

use crate::keptn::{KEPTN_TOKEN, keptn_as_shipped};
use crate::support::auth::{Answer, Layout, Scripted};
use crate::support::redis::RedisServer;
use crate::support::{TestGateway, Upstream, certs, empty, full, route_toml, within};

/// A password that must never be printed.
const PASSWORD: &str = "Pw-d0-not-print-7f3a";
/// A query-string API key that must never be printed.
const QUERY_KEY: &str = "k3y-d0-not-print-91c2";

async fn gatehouse(args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    within(&format!("gatehouse {}", args.join(" ")), output)
        .await
        .expect("gatehouse runs")
}

/// `gatehouse check` on `body` (after a `[server]`, `[tls]` and an `api-service` upstream):
/// the exit code and everything printed.
async fn check(body: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), body);
    let output = gatehouse(&["check", "-c", path.to_str().unwrap()]).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    write_config_with(dir, "", "", body)
}

/// [`write_config`] with extra `[server]` and `[tls]` keys.
fn write_config_with(dir: &Path, server: &str, tls: &str, body: &str) -> PathBuf {
    certs().write_into(dir);
    std::fs::write(dir.join("tokens.toml"), "").unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n\n\
         [tls]\ncert = \"certs/tls.crt\"\nkey = \"certs/tls.key\"\n{tls}\n\n\
         [[upstreams]]\nname = \"api-service\"\ntargets = [\"127.0.0.1:9\"]\n\n{body}"
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Asserts `check` refused the config with a `file: key: reason` line naming `key` whose reason
/// contains `reason`.
fn assert_refused(code: i32, text: &str, key: &str, reason: &str) {
    assert_eq!(code, 1, "check must refuse:\n{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no line names {key}:\n{text}"));
    assert!(line.contains("gateway.toml"), "{line}");
    assert!(line.contains(reason), "{line:?} should say {reason:?}");
}

const PROXY: &str = "[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\n";

// ---------------------------------------------------------------- auth lists fail closed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_auth_list_is_refused_not_public() {
    let (code, text) = check(&format!("{PROXY}auth = []\n")).await;
    assert_refused(code, &text, "routes[0].auth", "public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_auth_and_no_configured_kind_is_refused() {
    let (code, text) = check(PROXY).await;
    assert_refused(code, &text, "routes[0].auth", "auth = [\"public\"]");

    let (code, text) = check(&format!("{PROXY}auth = [\"public\"]\n")).await;
    assert_eq!(code, 0, "saying public is enough:\n{text}");
    assert!(text.contains("/api  auth public"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_auth_under_external_auth_only_asks_the_auth_service() {
    let auth = Scripted::start(Answer::status(401)).await;
    let upstream = Upstream::text("protected").await;
    let gw = TestGateway::start(&format!(
        "[auth.external]\nurl = \"{}\"\nnegative_cache_ttl = \"0s\"\n\n\
         [[upstreams]]\nname = \"api-service\"\ntargets = [\"{}\"]\n\n{PROXY}",
        auth.url("/auth"),
        upstream.addr
    ))
    .await;

    let resp = gw.get("/api/x").await;
    assert_eq!(resp.status, 401, "not public: {}", resp.text());
    assert_eq!(auth.calls(), 1, "the auth service decided");
    assert_eq!(upstream.count(), 0, "{:#?}", upstream.requests());

    auth.answer(Answer::status(200));
    let resp = gw.get("/api/y").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "protected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_on_a_public_route_are_refused() {
    let (code, text) = check(&format!(
        "{PROXY}auth = [\"public\"]\nroles = [\"viewer\"]\n"
    ))
    .await;
    assert_refused(code, &text, "routes[0].roles", "public route");

    let (code, text) = check(&format!(
        "{PROXY}auth = [\"public\"]\nwrite_roles = [\"admin\"]\n"
    ))
    .await;
    assert_refused(code, &text, "routes[0].write_roles", "public route");

    let (code, text) = check(
        "[[routes]]\npath = \"/health\"\nrespond = { status = 200, body = \"ok\" }\nroles = [\"viewer\"]\n",
    )
    .await;
    assert_refused(code, &text, "routes[0].roles", "public route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sections_not_built_get_a_warning_but_pass() {
    let (code, text) = check(&format!(
        "[audit]\npath = \"audit.log\"\n\n{PROXY}auth = [\"public\"]\n"
    ))
    .await;
    // The audit log is built now: its section passes without a warning.
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("warning:"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let path = write_config_with(
        dir.path(),
        "",
        "client_ca = \"ca.pem\"",
        &format!(
            "[auth]\ntokens = \"tokens.toml\"\n[auth.session]\nsecret_file = \"s.key\"\n\n{PROXY}auth = [\"public\"]\n"
        ),
    );
    let config = gatehouse::config::load_quiet(&path).unwrap();
    let keys: Vec<&str> = config.warnings.iter().map(|w| w.key.as_str()).collect();
    assert!(
        keys.is_empty(),
        "sessions and mTLS are built: no warning, got {keys:?}"
    );
}

// ---------------------------------------------------------------- failure_limit

/// A token store with one valid token and a token-only route; `auth_extra` goes under `[auth]`.
async fn token_gateway(auth_extra: &str) -> (TestGateway, Upstream, String) {
    let upstream = Upstream::text("ok").await;
    let layout = Layout::new();
    let token = layout.mint("ci", &["viewer"]);
    let gw = layout
        .start(&format!(
            "[auth]\ntokens = \"tokens.toml\"\n{auth_extra}\n\n\
             [[upstreams]]\nname = \"api-service\"\ntargets = [\"{}\"]\n\n{PROXY}auth = [\"token\"]\n",
            upstream.addr
        ))
        .await;
    (gw, upstream, token)
}

async fn get_with_token(gw: &TestGateway, token: &str) -> crate::support::Resp {
    gw.client()
        .send(
            Request::get("/api/x")
                .header("x-token", token)
                .body(empty())
                .unwrap(),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_limit_is_on_by_default() {
    let (gw, upstream, token) = token_gateway("").await;
    for attempt in 1..=20 {
        let resp = get_with_token(&gw, &format!("guess-{attempt}")).await;
        assert_eq!(resp.error(401), "invalid token", "attempt {attempt}");
    }
    let resp = get_with_token(&gw, "guess-21").await;
    assert_eq!(resp.error(429), "too many failed attempts");
    let resp = get_with_token(&gw, &token).await;
    assert_eq!(resp.status, 429, "blocked, valid token included");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_limit_off_turns_it_off() {
    let (gw, upstream, token) = token_gateway("failure_limit = \"off\"").await;
    for attempt in 1..=25 {
        let resp = get_with_token(&gw, &format!("guess-{attempt}")).await;
        assert_eq!(resp.error(401), "invalid token", "attempt {attempt}");
    }
    assert_eq!(get_with_token(&gw, &token).await.status, 200);
    assert_eq!(upstream.count(), 1);

    let (code, text) = check(&format!(
        "[auth]\nfailure_limit = \"of\"\n\n{PROXY}auth = [\"public\"]\n"
    ))
    .await;
    assert_refused(code, &text, "auth.failure_limit", "\"off\"");
}

// ---------------------------------------------------------------- URLs with credentials

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_url_with_a_password_works_and_is_never_shown() {
    if crate::support::redis::skip_without_server() {
        return;
    }
    let redis = RedisServer::start().await;
    let _: String = redis
        .query(
            ::redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg(PASSWORD),
        )
        .await;
    let upstream = Upstream::text("ok").await;
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/", redis.port);
    let gw = TestGateway::start(&format!(
        "[rate_limits.backend]\nredis = \"{url}\"\non_error = \"deny\"\ntimeout = \"2s\"\n\n\
         [rate_limits.once]\nkey = \"route\"\nrate = \"1/h\"\nburst = 1\n\n\
         [[upstreams]]\nname = \"api\"\ntargets = [\"{}\"]\n{}",
        upstream.addr,
        route_toml("/api", "api", "rate_limit = \"once\"")
    ))
    .await;

    // on_error = "deny": a 200 then a 429 means Redis answered, so the password was sent.
    let first = gw.get("/api/x").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(gw.get("/api/x").await.status, 429);

    let config = gw.admin_get("/config").await;
    assert_eq!(config.status, 200);
    let text = config.text();
    assert!(!text.contains(PASSWORD), "{text}");
    assert_eq!(
        config.json()["rate_limits"]["backend"]["redis"],
        format!("redis://:***@127.0.0.1:{}/", redis.port)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_never_echo_a_urls_password_or_query() {
    let (code, text) = check(&format!(
        "[rate_limits.backend]\nredis = \"redis://:{PASSWORD}@\"\n\n{PROXY}auth = [\"public\"]\n"
    ))
    .await;
    assert_refused(code, &text, "rate_limits.backend.redis", "redis://:***@");
    assert!(!text.contains(PASSWORD), "{text}");

    let (code, text) = check(&format!(
        "[auth.external]\nurl = \"ftp://user:{PASSWORD}@auth/v1?key={QUERY_KEY}\"\n\n\
         {PROXY}auth = [\"external\"]\n"
    ))
    .await;
    assert_refused(
        code,
        &text,
        "auth.external.url",
        "ftp://user:***@auth/v1?***",
    );
    assert!(
        !text.contains(PASSWORD) && !text.contains(QUERY_KEY),
        "{text}"
    );

    let (code, text) = check(&format!(
        "[auth.jwt]\njwks_url = \"http://idp.example.com/jwks?key={QUERY_KEY}\"\n\n\
         {PROXY}auth = [\"jwt\"]\n"
    ))
    .await;
    assert_refused(code, &text, "auth.jwt.jwks_url", "https");
    assert!(!text.contains(QUERY_KEY), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_must_be_https_unless_loopback() {
    let jwt = |url: &str| format!("[auth.jwt]\njwks_url = \"{url}\"\n\n{PROXY}auth = [\"jwt\"]\n");
    let (code, text) = check(&jwt("http://example.com/jwks.json")).await;
    assert_refused(code, &text, "auth.jwt.jwks_url", "must use https");

    for url in [
        "https://example.com/jwks.json",
        "http://127.0.0.1:9/jwks.json",
        "http://127.1.2.3:9/jwks.json",
        "http://localhost:9/jwks.json",
        "http://[::1]:9/jwks.json",
    ] {
        let (code, text) = check(&jwt(url)).await;
        assert_eq!(code, 0, "{url}:\n{text}");
    }
}

// ---------------------------------------------------------------- [server] hsts

#[test]
fn hsts_defaults_to_a_year_and_0s_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let hsts = |line: &str| {
        let path = write_config_with(
            dir.path(),
            line,
            "",
            &format!("{PROXY}auth = [\"public\"]\n"),
        );
        gatehouse::config::load_quiet(&path)
            .map(|c| c.server.hsts.map(|v| v.to_str().unwrap().to_owned()))
            .map_err(|e| e.to_string())
    };
    assert_eq!(hsts(""), Ok(Some("max-age=31536000".to_owned())));
    assert_eq!(hsts("hsts = \"0s\""), Ok(None));
    assert_eq!(hsts("hsts = \"1d\""), Ok(Some("max-age=86400".to_owned())));
    assert!(hsts("hsts = \"forever\"").is_err_and(|e| e.contains("server.hsts")));
}

// ---------------------------------------------------------------- Keptn's NGINX defaults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_refuses_a_body_over_1m_with_413() {
    let (gw, _api, configuration) = keptn_as_shipped().await;
    let post = |size: usize| {
        Request::post("/api/configuration-service/v1/project")
            .header("x-token", KEPTN_TOKEN)
            .body(full(vec![b'a'; size]))
            .unwrap()
    };

    // HTTP/2, so the early 413 cannot race the rest of the upload (a refused HTTP/1.1 upload is
    // SPEC §8.13's concern, not this test's).
    let client = gw.h2_client();
    let resp = client.send(post(1024 * 1024)).await;
    assert_eq!(resp.status, 200, "1 MiB is allowed: {}", resp.text());
    let resp = client.send(post(1024 * 1024 + 1)).await;
    assert_eq!(resp.error(413), "request body too large");
    assert_eq!(
        configuration.count(),
        1,
        "the oversize body never reached it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_refuses_a_40k_header_with_431() {
    let (gw, api, _configuration) = keptn_as_shipped().await;
    let resp = gw
        .client()
        .send(
            Request::get("/api/v1/metadata")
                .header("x-token", KEPTN_TOKEN)
                .header("x-big", "a".repeat(40 * 1024))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(api.count(), 0, "{:#?}", api.requests());

    let resp = gw
        .client()
        .send(
            Request::get("/api/v1/metadata")
                .header("x-token", KEPTN_TOKEN)
                .header("x-big", "a".repeat(7 * 1024))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "an 7 KiB header fits: {}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_redirects_the_bare_secrets_path_to_the_slash_path() {
    let (gw, api, _configuration) = keptn_as_shipped().await;
    for (path, location) in [
        ("/api/secrets", "/api/secrets/"),
        ("/api/secrets?scope=keptn", "/api/secrets/?scope=keptn"),
    ] {
        let resp = gw.get(path).await;
        assert_eq!(resp.status, 301, "{path}: {}", resp.text());
        assert_eq!(resp.header("location"), Some(location), "{path}");
    }
    assert_eq!(api.count(), 0, "not passed to /api: {:#?}", api.requests());
}
