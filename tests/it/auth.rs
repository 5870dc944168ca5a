//! Authentication and authorization through real TLS (SPEC §2 `[auth]`, `[auth.jwt]`,
//! `[auth.external]`, §3, §4; issue 4): API tokens from the store (Bearer and `x-token`, missing,
//! wrong, expired, disabled, bad checksum, plain Keptn-style strings, `file =` tokens), roles and
//! the write gate, identity headers to upstreams and spoofed ones stripped, JWTs (RS256, ES256,
//! EdDSA from a JWKS file; `iss`, `aud`, `exp` with leeway, `alg: none`, key confusion, unknown
//! `kid`, refetch from a `jwks_url`, roles from `roles` or `scope`), external auth with NGINX
//! `auth_request` semantics and its decision cache, and the failed-attempt limit.
//!
//! Every test asserts the exact status, the JSON `error`, `WWW-Authenticate` and what the
//! upstream (and the auth service) received, or that it received nothing.

use gatehouse::auth::token_format::{self, Shape};
use gatehouse::reload::ReloadOutcome;
use http::{Method, Request};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::auth::{
    Answer, CHALLENGE, INVALID_TOKEN_CHALLENGE, JwtKey, Layout, RSA_TEST_PUBLIC_KEY, Scripted,
    assert_identity, forged_jwt, hs256, identity_like_headers, jwks, unix_now,
};
use crate::support::files::K8sVolume;
use crate::support::upstream::Recorded;
use crate::support::{Resp, TestGateway, Upstream, empty, full, route_toml, upstream_toml};

// ------------------------------------------------------------------------------------ helpers

/// A `[[routes]]` table proxying `path` to `api-service` with credential kinds `auth` (TOML
/// array text); `extra` adds keys (`roles`, `write_roles`).
fn protected(path: &str, auth: &str, extra: &str) -> String {
    format!("\n[[routes]]\npath = \"{path}\"\nupstream = \"api-service\"\nauth = {auth}\n{extra}\n")
}

/// `method path` over HTTPS/1.1 with `headers` and an empty body.
async fn send(gw: &TestGateway, method: Method, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    gw.client().send(request.body(empty()).unwrap()).await
}

/// `GET path` with `headers`.
async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(gw, Method::GET, path, headers).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A 401 `invalid token` with the RFC 6750 `error="invalid_token"` challenge.
fn assert_invalid_token(resp: &Resp) {
    assert_eq!(resp.error(401), "invalid token");
    assert_eq!(
        resp.header("www-authenticate"),
        Some(INVALID_TOKEN_CHALLENGE)
    );
}

/// The upstream got nothing.
fn assert_untouched(up: &Upstream, why: &str) {
    assert_eq!(
        up.count(),
        0,
        "{why}: the upstream got {:#?}",
        up.requests()
    );
}

/// The hand-written `GET path` with `headers` (exact bytes, any header spelling), with
/// `Connection: close`.
async fn raw_get(
    gw: &TestGateway,
    path: &str,
    headers: &[&str],
) -> crate::support::raw::RawResponse {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\n",
        gw.https.port()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    gw.raw_exchange(request.as_bytes()).await
}

// ------------------------------------------------------------------------------ token store

/// When the expired entry stopped being valid (written into the store by hand).
const EXPIRED_AT: &str = "2021-06-01T12:00:00Z";
/// A Keptn-style token: a plain random string, no `gth_` prefix or checksum.
const PLAIN_TOKEN: &str = "q7XbN2vLk9RzT4mW8cYp3JdF6hGs1AeK";

/// The tokens in the store [`token_gateway`] starts with.
struct Tokens {
    viewer: String,
    operator: String,
    admin: String,
    auditor: String,
    expired: String,
    disabled: String,
}

/// `tokens.toml` with minted `gth_` tokens (viewer, operator, admin, a custom `auditor` role)
/// and hand-written entries: an expired one, a disabled one (both `gth_` tokens) and a plain
/// Keptn-style string.
fn token_store(layout: &Layout) -> Tokens {
    let tokens = Tokens {
        viewer: layout.mint("ci-viewer", &["viewer"]),
        operator: layout.mint("ci-operator", &["operator"]),
        admin: layout.mint("ci-admin", &["admin"]),
        auditor: layout.mint("audit-bot", &["auditor"]),
        expired: token_format::generate().expose().clone(),
        disabled: token_format::generate().expose().clone(),
    };
    layout.add_token(
        "old-bot",
        &tokens.expired,
        &["admin"],
        &format!("expires = \"{EXPIRED_AT}\""),
    );
    layout.add_token("off-bot", &tokens.disabled, &["admin"], "disabled = true");
    layout.add_token("keptn", PLAIN_TOKEN, &["viewer"], "");
    tokens
}

/// A gateway with the [`token_store`] in front of a text upstream: `/api` (token; viewer reads,
/// operator writes), `/audit` (token; the custom role `auditor`), `/public`. `auth_extra` adds
/// `[auth]` keys.
async fn token_gateway(auth_extra: &str) -> (TestGateway, Upstream, Tokens) {
    let up = Upstream::text("upstream ok").await;
    let layout = Layout::new();
    let tokens = token_store(&layout);
    let config = format!(
        "[auth]\ntokens = \"tokens.toml\"\n{auth_extra}\n{}{}{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        protected(
            "/api",
            "[\"token\"]",
            "roles = [\"viewer\"]\nwrite_roles = [\"operator\"]"
        ),
        protected("/audit", "[\"token\"]", "roles = [\"auditor\"]"),
        route_toml("/public", "api-service", ""),
    );
    (layout.start(&config).await, up, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_reaches_upstream_with_identity_headers_over_h1_and_h2() {
    let (gw, up, tokens) = token_gateway("").await;
    let authorization = bearer(&tokens.viewer);

    for client in [gw.client(), gw.h2_client()] {
        let resp = client
            .send(
                Request::get("/api/projects?page=2")
                    .header("authorization", &authorization)
                    .body(empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.text(), "upstream ok");
        assert_eq!(resp.header("www-authenticate"), None);
    }

    let got = up.wait_for_requests(2).await;
    for request in &got {
        assert_eq!(request.uri, "/api/projects?page=2");
        assert_identity(request, "ci-viewer", "viewer", "token");
        assert_eq!(
            request.header("authorization"),
            Some(authorization.as_str()),
            "forward_credentials defaults to true"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_token_header_is_accepted_like_bearer() {
    let (gw, up, tokens) = token_gateway("").await;

    let resp = get(&gw, "/api/x", &[("x-token", &tokens.operator)]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    let got = up.single_request();
    assert_identity(&got, "ci-operator", "operator", "token");
    assert_eq!(got.header("x-token"), Some(tokens.operator.as_str()));
    assert_eq!(got.header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_get_401_with_bearer_challenge() {
    let (gw, up, _tokens) = token_gateway("").await;

    for headers in [
        &[][..],
        &[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")][..],
        &[("authorization", "Bearer ")][..],
        &[("x-token", "")][..],
    ] {
        let resp = get(&gw, "/api/x", headers).await;
        assert_eq!(resp.error(401), "missing credentials", "{headers:?}");
        assert_eq!(
            resp.header("www-authenticate"),
            Some(CHALLENGE),
            "{headers:?}"
        );
    }
    assert_untouched(&up, "no credential");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_token_gets_401_invalid_token() {
    let (gw, up, _tokens) = token_gateway("").await;
    let unknown = token_format::generate().expose().clone();
    assert_eq!(token_format::shape(&unknown), Shape::Gatehouse);

    for headers in [
        [("authorization", bearer(&unknown))],
        [("x-token", unknown.clone())],
        [("x-token", "not-a-token-anyone-issued".to_owned())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let resp = get(&gw, "/api/x", &headers).await;
        assert_invalid_token(&resp);
        assert!(
            !resp.text().contains(headers[0].1),
            "the error never echoes the token: {}",
            resp.text()
        );
    }
    assert_untouched(&up, "unknown tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_gets_401_with_expiry_time() {
    let (gw, up, tokens) = token_gateway("").await;

    let resp = get(
        &gw,
        "/api/x",
        &[("authorization", &bearer(&tokens.expired))],
    )
    .await;
    assert_eq!(resp.error(401), format!("token expired at {EXPIRED_AT}"));
    assert_eq!(
        resp.header("www-authenticate"),
        Some(INVALID_TOKEN_CHALLENGE)
    );
    assert_untouched(&up, "an expired token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_token_gets_401_invalid_token() {
    let (gw, up, tokens) = token_gateway("").await;

    let resp = get(&gw, "/api/x", &[("x-token", &tokens.disabled)]).await;
    assert_invalid_token(&resp);
    assert_untouched(&up, "a disabled token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gth_token_with_bad_checksum_is_refused_even_if_its_hash_is_stored() {
    let up = Upstream::text("upstream ok").await;
    let layout = Layout::new();
    let good = layout.mint("ci-admin", &["admin"]);
    // A typo in the last character: same prefix and length, wrong checksum.
    let last = good.chars().last().unwrap();
    let typo = format!(
        "{}{}",
        &good[..good.len() - 1],
        if last == 'a' { 'b' } else { 'a' }
    );
    assert_eq!(token_format::shape(&typo), Shape::BadChecksum);
    // Even an entry for exactly that string is never looked up.
    layout.add_token("typo", &typo, &["admin"], "");
    let gw = layout
        .start(&format!(
            "[auth]\ntokens = \"tokens.toml\"\n{}{}",
            upstream_toml("api-service", &[up.addr], ""),
            protected("/api", "[\"token\"]", "")
        ))
        .await;

    for token in [typo.as_str(), "gth_short", &format!("{good}x")] {
        let resp = get(&gw, "/api/x", &[("authorization", &bearer(token))]).await;
        assert_invalid_token(&resp);
    }
    assert_untouched(&up, "bad checksums");

    let resp = get(&gw, "/api/x", &[("authorization", &bearer(&good))]).await;
    assert_eq!(resp.status, 200);
    assert_identity(&up.single_request(), "ci-admin", "admin", "token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_keptn_style_token_in_the_store_is_accepted() {
    let (gw, up, _tokens) = token_gateway("").await;
    assert_eq!(token_format::shape(PLAIN_TOKEN), Shape::Other);

    let resp = get(&gw, "/api/x", &[("x-token", PLAIN_TOKEN)]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_identity(&up.single_request(), "keptn", "viewer", "token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_token_from_a_secret_style_file_is_accepted() {
    let up = Upstream::text("upstream ok").await;
    let layout = Layout::new();
    // A Kubernetes Secret volume (`..data` symlink swap layout), raw token, no newline.
    K8sVolume::create(
        &layout.path("secrets/keptn-api-token"),
        &[("keptn-api-token", PLAIN_TOKEN.as_bytes())],
    );
    // A file written with `echo token > file`: the trailing newline is not part of the token.
    layout.write("secrets/echoed", "echoed-token-0123456789\n");
    layout.append_tokens(
        "[[tokens]]\nid = \"keptn\"\nfile = \"secrets/keptn-api-token/keptn-api-token\"\nroles = [\"admin\"]\n\n\
         [[tokens]]\nid = \"echoed\"\nfile = \"secrets/echoed\"\nroles = [\"viewer\"]\n",
    );
    let gw = layout
        .start(&format!(
            "[auth]\ntokens = \"tokens.toml\"\n{}{}",
            upstream_toml("api-service", &[up.addr], ""),
            protected("/api", "[\"token\"]", "")
        ))
        .await;

    let resp = get(&gw, "/api/x", &[("x-token", PLAIN_TOKEN)]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = get(
        &gw,
        "/api/y",
        &[("authorization", "Bearer echoed-token-0123456789")],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = up.wait_for_requests(2).await;
    assert_identity(&got[0], "keptn", "admin", "token");
    assert_identity(&got[1], "echoed", "viewer", "token");

    let resp = get(&gw, "/api/z", &[("x-token", &PLAIN_TOKEN[1..])]).await;
    assert_invalid_token(&resp);
    assert_eq!(up.count(), 2);
}

// ------------------------------------------------------------------------- roles, write gate

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_may_read_but_not_write() {
    let (gw, up, tokens) = token_gateway("").await;
    let auth = bearer(&tokens.viewer);

    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        let resp = send(&gw, method.clone(), "/api/x", &[("authorization", &auth)]).await;
        assert_eq!(resp.status, 200, "{method}");
    }
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let resp = send(&gw, method.clone(), "/api/x", &[("authorization", &auth)]).await;
        assert_eq!(resp.error(403), "role operator required", "{method}");
        assert_eq!(resp.header("www-authenticate"), None);
    }
    let methods: Vec<Method> = up.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, [Method::GET, Method::HEAD, Method::OPTIONS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_admin_may_write_and_admin_satisfies_operator() {
    let (gw, up, tokens) = token_gateway("").await;

    for (token, id) in [
        (&tokens.operator, "ci-operator"),
        (&tokens.admin, "ci-admin"),
    ] {
        let resp = gw
            .client()
            .send(
                Request::post("/api/items")
                    .header("authorization", bearer(token))
                    .body(full("{\"name\":\"x\"}"))
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status, 200, "{id}: {}", resp.text());
        let got = up.requests().pop().unwrap();
        assert_eq!(got.method, Method::POST);
        assert_eq!(&got.body[..], b"{\"name\":\"x\"}");
        assert_eq!(got.header("x-auth-subject"), Some(id));
    }
    let resp = get(&gw, "/api/items", &[("x-token", &tokens.admin)]).await;
    assert_eq!(resp.status, 200, "admin satisfies viewer");
    assert_eq!(up.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_role_matches_exactly() {
    let (gw, up, tokens) = token_gateway("").await;

    let resp = get(&gw, "/audit/log", &[("x-token", &tokens.auditor)]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_identity(&up.single_request(), "audit-bot", "auditor", "token");

    for token in [&tokens.admin, &tokens.viewer] {
        let resp = get(&gw, "/audit/log", &[("x-token", token)]).await;
        assert_eq!(
            resp.error(403),
            "role auditor required",
            "admin is not above a custom role"
        );
    }
    let resp = get(&gw, "/api/x", &[("x-token", &tokens.auditor)]).await;
    assert_eq!(
        resp.error(403),
        "role viewer required",
        "a custom role satisfies no built-in one"
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_gate_refuses_every_write_even_for_admin() {
    let (gw, up, tokens) = token_gateway("write_actions = false").await;
    let auth = bearer(&tokens.admin);

    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let resp = send(&gw, method.clone(), "/api/x", &[("authorization", &auth)]).await;
        assert_eq!(resp.error(403), "write actions are disabled", "{method}");
        let resp = send(&gw, method.clone(), "/public/x", &[]).await;
        assert_eq!(
            resp.error(403),
            "write actions are disabled",
            "{method} on a public route"
        );
    }
    assert_untouched(&up, "the write gate");

    let resp = get(&gw, "/api/x", &[("authorization", &auth)]).await;
    assert_eq!(resp.status, 200, "reads pass the write gate");
    assert_eq!(up.single_request().method, Method::GET);
}

// ------------------------------------------------------------------------- identity headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_strip_the_identity_headers_by_naming_them_in_connection() {
    let (gw, up, tokens) = token_gateway("").await;

    // Connection lists hop-by-hop headers the proxy must drop: the client's own, never the
    // ones gatehouse adds, or a caller could hide who it is from the upstream.
    let raw = raw_get(
        &gw,
        "/api/x",
        &[
            &format!("Authorization: Bearer {}", tokens.viewer),
            "Connection: x-auth-subject, X-Auth-Roles, x-auth-method, x-forwarded-for, x-real-ip, x-request-id, x-hop",
            "X-Hop: dropped",
        ],
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());

    let got = up.single_request();
    assert_identity(&got, "ci-viewer", "viewer", "token");
    assert!(got.header("x-forwarded-for").is_some() && got.header("x-real-ip").is_some());
    assert!(got.header("x-request-id").is_some());
    assert!(
        got.header("x-hop").is_none(),
        "a header Connection names is dropped"
    );
    assert!(
        got.header("connection")
            .is_none_or(|c| !c.contains("x-auth"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_upstream() {
    let (gw, up, tokens) = token_gateway("").await;

    let raw = raw_get(
        &gw,
        "/api/x",
        &[
            &format!("Authorization: Bearer {}", tokens.viewer),
            "X-Auth-Subject: root",
            "x_auth_subject: root",
            "X_Auth_Roles: admin",
            "x-auth-method: jwt",
            "X-AUTH-EXTRA: 1",
        ],
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());

    let got = up.single_request();
    let mut names = identity_like_headers(&got, &[]);
    names.sort();
    assert_eq!(names, ["x-auth-method", "x-auth-roles", "x-auth-subject"]);
    assert_identity(&got, "ci-viewer", "viewer", "token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped_on_public_routes() {
    let (gw, up, _tokens) = token_gateway("").await;

    let raw = raw_get(
        &gw,
        "/public/x",
        &[
            "X-Auth-Subject: root",
            "x_auth_subject: root",
            "X-Auth-Roles: admin",
            "x_Auth_Method: token",
            "X-Kept: yes",
        ],
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());

    let got = up.single_request();
    assert_eq!(identity_like_headers(&got, &[]), Vec::<String>::new());
    assert_eq!(
        got.header("x-kept"),
        Some("yes"),
        "other headers are untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_credentials_false_removes_authorization_and_x_token_upstream() {
    let (gw, up, tokens) = token_gateway("forward_credentials = false").await;

    let resp = get(
        &gw,
        "/api/x",
        &[
            ("authorization", &bearer(&tokens.viewer)),
            ("x-token", &tokens.viewer),
            ("cookie", "theme=dark"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = get(&gw, "/api/y", &[("x-token", &tokens.operator)]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    let got = up.wait_for_requests(2).await;
    for request in &got {
        assert_eq!(request.header("authorization"), None);
        assert_eq!(request.header("x-token"), None);
    }
    assert_identity(&got[0], "ci-viewer", "viewer", "token");
    assert_identity(&got[1], "ci-operator", "operator", "token");
    assert_eq!(got[0].header("cookie"), Some("theme=dark"));
}

// -------------------------------------------------------------------------- failure limit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_tokens_get_429_then_even_a_valid_token_is_refused() {
    let (gw, up, tokens) = token_gateway("failure_limit = { rate = \"1/min\", burst = 3 }").await;

    for i in 0..3 {
        let resp = get(&gw, "/api/x", &[("x-token", &format!("wrong-{i}"))]).await;
        assert_invalid_token(&resp);
    }
    let resp = get(&gw, "/api/x", &[("x-token", "wrong-3")]).await;
    assert_eq!(resp.error(429), "too many failed attempts");
    let retry_after: u64 = resp
        .header("retry-after")
        .expect("429 carries Retry-After")
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");

    let resp = get(&gw, "/api/x", &[("authorization", &bearer(&tokens.admin))]).await;
    assert_eq!(
        resp.error(429),
        "too many failed attempts",
        "the IP is blocked, valid token or not"
    );
    assert!(resp.header("retry-after").is_some());
    assert_untouched(&up, "failed attempts");
}

// ------------------------------------------------------------------------------------ JWT

const ISSUER: &str = "https://issuer.test/";

fn claims() -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER,
        "aud": "gatehouse",
        "sub": "alice",
        "roles": ["viewer", "operator"],
        "iat": now,
        "exp": now + 3600,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// `[auth.jwt]` over a JWKS file holding the three keys, plus a token store with one minted
/// token; routes `/api` (jwt; viewer reads, operator writes) and `/mixed` (token or jwt).
/// `jwt_extra` adds `[auth.jwt]` keys.
struct JwtGateway {
    gw: TestGateway,
    up: Upstream,
    keys: [JwtKey; 3],
    store_token: String,
}

async fn jwt_gateway(jwt_extra: &str) -> JwtGateway {
    let up = Upstream::text("upstream ok").await;
    let keys = [
        JwtKey::rsa("rsa-1"),
        JwtKey::es256("ec-1"),
        JwtKey::ed25519("ed-1"),
    ];
    let layout = Layout::new();
    layout.write("jwks.json", jwks(&[&keys[0], &keys[1], &keys[2]]));
    let store_token = layout.mint("ci-bot", &["viewer"]);
    let config = format!(
        "[auth]\ntokens = \"tokens.toml\"\n\n[auth.jwt]\nissuer = \"{ISSUER}\"\naudiences = [\"gatehouse\"]\n\
         algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\njwks_file = \"jwks.json\"\nleeway = \"60s\"\n{jwt_extra}\n{}{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        protected(
            "/api",
            "[\"jwt\"]",
            "roles = [\"viewer\"]\nwrite_roles = [\"operator\"]"
        ),
        protected("/mixed", "[\"token\", \"jwt\"]", "roles = [\"viewer\"]"),
    );
    JwtGateway {
        gw: layout.start(&config).await,
        up,
        keys,
        store_token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_signed_with_rs256_es256_and_eddsa_keys_from_a_jwks_file_are_accepted() {
    let JwtGateway { gw, up, keys, .. } = jwt_gateway("").await;

    for (i, key) in keys.iter().enumerate() {
        let token = key.sign(&claims());
        let resp = get(&gw, "/api/x", &[("authorization", &bearer(&token))]).await;
        assert_eq!(resp.status, 200, "{}: {}", key.kid, resp.text());
        let got = up.wait_for_requests(i + 1).await;
        assert_identity(&got[i], "alice", "viewer,operator", "jwt");
    }
    // A JWT in x-token counts too, and roles from the `roles` array allow writes.
    let token = keys[1].sign(&claims());
    let resp = send(&gw, Method::POST, "/api/x", &[("x-token", &token)]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(up.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_roles_array_below_write_roles_gets_403() {
    let JwtGateway { gw, up, keys, .. } = jwt_gateway("").await;

    let token = keys[2].sign(&with(claims(), "roles", json!(["viewer"])));
    let resp = send(
        &gw,
        Method::DELETE,
        "/api/x",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(resp.error(403), "role operator required");
    let no_roles = keys[2].sign(&with(claims(), "roles", json!([])));
    let resp = get(&gw, "/api/x", &[("authorization", &bearer(&no_roles))]).await;
    assert_eq!(resp.error(403), "role viewer required");
    assert_untouched(&up, "insufficient JWT roles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_wrong_issuer_gets_401_invalid_token() {
    let JwtGateway { gw, up, keys, .. } = jwt_gateway("").await;

    for iss in [json!("https://evil.test/"), json!(null)] {
        let token = keys[1].sign(&with(claims(), "iss", iss));
        assert_invalid_token(&get(&gw, "/api/x", &[("authorization", &bearer(&token))]).await);
    }
    assert_untouched(&up, "wrong iss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_wrong_audience_gets_401_invalid_token() {
    let JwtGateway { gw, up, keys, .. } = jwt_gateway("").await;

    for aud in [json!("other"), json!(["other", "another"]), json!(null)] {
        let token = keys[0].sign(&with(claims(), "aud", aud));
        assert_invalid_token(&get(&gw, "/api/x", &[("authorization", &bearer(&token))]).await);
    }
    assert_untouched(&up, "wrong aud");

    let token = keys[0].sign(&with(claims(), "aud", json!(["other", "gatehouse"])));
    let resp = get(&gw, "/api/x", &[("authorization", &bearer(&token))]).await;
    assert_eq!(resp.status, 200, "one matching audience is enough");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_expired_beyond_the_leeway_gets_401_with_its_expiry_time() {
    let JwtGateway { gw, up, keys, .. } = jwt_gateway("").await;

    let exp = unix_now() - 300;
    let token = keys[2].sign(&with(claims(), "exp", json!(exp)));
    let resp = get(&gw, "/api/x", &[("authorization", &bearer(&token))]).await;
    let at = OffsetDateTime::from_unix_timestamp(exp)
        .unwrap()
        .format(&Rfc3339)
        .unwrap();
    assert!(at.ends_with('Z'), "{at}");
    assert_eq!(resp.error(401), format!("token expired at {at}"));
    assert_eq!(
        resp.header("www-authenticate"),
        Some(INVALID_TOKEN_CHALLENGE)
    );
    assert_untouched(&up, "an expired JWT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_expired_within_the_leeway_is_accepted() {
    let JwtGateway { gw, up, keys, .. } = jwt_gateway("").await;

    let token = keys[1].sign(&with(claims(), "exp", json!(unix_now() - 20)));
    let resp = get(&gw, "/api/x", &[("authorization", &bearer(&token))]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_identity(&up.single_request(), "alice", "viewer,operator", "jwt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_not_yet_valid_beyond_the_leeway_gets_401_invalid_token() {
    let JwtGateway { gw, up, keys, .. } = jwt_gateway("").await;

    let early = keys[0].sign(&with(claims(), "nbf", json!(unix_now() + 300)));
    assert_invalid_token(&get(&gw, "/api/x", &[("authorization", &bearer(&early))]).await);
    assert_untouched(&up, "nbf in the future");

    let skewed = keys[0].sign(&with(claims(), "nbf", json!(unix_now() + 20)));
    let resp = get(&gw, "/api/x", &[("authorization", &bearer(&skewed))]).await;
    assert_eq!(
        resp.status,
        200,
        "clock skew within the leeway: {}",
        resp.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_alg_none_is_refused() {
    let JwtGateway { gw, up, .. } = jwt_gateway("").await;

    for alg in ["none", "None", "NONE"] {
        for signature in ["", "c2lnbmF0dXJl"] {
            let token = forged_jwt(&json!({"alg": alg, "kid": "rsa-1"}), &claims(), signature);
            let resp = get(&gw, "/api/x", &[("authorization", &bearer(&token))]).await;
            assert_invalid_token(&resp);
            let resp = get(&gw, "/mixed/x", &[("authorization", &bearer(&token))]).await;
            assert_invalid_token(&resp);
        }
    }
    assert_untouched(&up, "alg none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_jwt_signed_with_the_rsa_public_key_pem_is_refused() {
    let JwtGateway { gw, up, .. } = jwt_gateway("").await;

    for kid in ["rsa-1", "nope"] {
        let token = hs256(&claims(), RSA_TEST_PUBLIC_KEY.as_bytes(), kid);
        assert_invalid_token(&get(&gw, "/api/x", &[("authorization", &bearer(&token))]).await);
    }
    assert_untouched(&up, "RS256 -> HS256 key confusion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_unknown_kid_or_forged_signature_is_refused() {
    let JwtGateway { gw, up, keys, .. } = jwt_gateway("").await;

    let stranger = JwtKey::es256("stranger");
    assert_invalid_token(
        &get(
            &gw,
            "/api/x",
            &[("authorization", &bearer(&stranger.sign(&claims())))],
        )
        .await,
    );
    // A key that claims a known kid but is not that key.
    let impostor = JwtKey::es256("ec-1");
    assert_invalid_token(
        &get(
            &gw,
            "/api/x",
            &[("authorization", &bearer(&impostor.sign(&claims())))],
        )
        .await,
    );
    // A real token whose payload was swapped.
    let real = keys[1].sign(&claims());
    let parts: Vec<&str> = real.split('.').collect();
    let evil = forged_jwt(
        &json!({"alg": "ES256", "kid": "ec-1"}),
        &with(claims(), "sub", json!("mallory")),
        "",
    );
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        evil.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert_invalid_token(&get(&gw, "/api/x", &[("authorization", &bearer(&tampered))]).await);
    assert_untouched(&up, "unknown kid and bad signatures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_roles_from_a_space_separated_scope_claim() {
    let JwtGateway { gw, up, keys, .. } = jwt_gateway("roles_claim = \"scope\"").await;

    let writer = keys[0].sign(&with(claims(), "scope", json!("viewer operator")));
    let resp = send(
        &gw,
        Method::POST,
        "/api/x",
        &[("authorization", &bearer(&writer))],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_identity(&up.single_request(), "alice", "viewer,operator", "jwt");

    // With roles_claim = "scope", the `roles` array grants nothing.
    let reader = keys[0].sign(&with(claims(), "scope", json!("viewer")));
    let resp = send(
        &gw,
        Method::POST,
        "/api/x",
        &[("authorization", &bearer(&reader))],
    )
    .await;
    assert_eq!(resp.error(403), "role operator required");
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_accepting_token_and_jwt_takes_either_and_jwt_only_route_refuses_store_tokens() {
    let JwtGateway {
        gw,
        up,
        keys,
        store_token,
    } = jwt_gateway("").await;

    let resp = get(&gw, "/mixed/a", &[("x-token", &store_token)]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let jwt = keys[2].sign(&claims());
    let resp = get(&gw, "/mixed/b", &[("authorization", &bearer(&jwt))]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = up.wait_for_requests(2).await;
    assert_identity(&got[0], "ci-bot", "viewer", "token");
    assert_identity(&got[1], "alice", "viewer,operator", "jwt");

    let resp = get(&gw, "/api/x", &[("x-token", &store_token)]).await;
    assert_invalid_token(&resp);
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_makes_the_gateway_refetch_the_jwks_url() {
    let up = Upstream::text("upstream ok").await;
    let (first, second, third) = (
        JwtKey::rsa("rsa-1"),
        JwtKey::ed25519("ed-2"),
        JwtKey::es256("ec-3"),
    );
    let issuer =
        Scripted::start(Answer::json(jwks(&[&first])).header("cache-control", "max-age=600")).await;
    let gw = Layout::new()
        .start(&format!(
            "[auth.jwt]\nissuer = \"{ISSUER}\"\naudiences = [\"gatehouse\"]\n\
             algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\njwks_url = \"{}\"\njwks_refresh = \"10m\"\n{}{}",
            issuer.url("/.well-known/jwks.json"),
            upstream_toml("api-service", &[up.addr], ""),
            protected("/api", "[\"jwt\"]", "")
        ))
        .await;

    // The start-up fetch (background refresh) has arrived; a token for its key waits for it.
    issuer.server.wait_for_requests(1).await;
    let resp = get(
        &gw,
        "/api/x",
        &[("authorization", &bearer(&first.sign(&claims())))],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(issuer.calls(), 1, "a known kid needs no refetch");

    // The issuer rotates in a new key: its first token makes one refetch.
    issuer.answer(Answer::json(jwks(&[&first, &second])));
    let resp = get(
        &gw,
        "/api/y",
        &[("authorization", &bearer(&second.sign(&claims())))],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(issuer.calls(), 2, "one refetch for the unknown kid");
    let fetch = &issuer.requests()[1];
    assert_eq!(fetch.method, Method::GET);
    assert_eq!(fetch.uri, "/.well-known/jwks.json");

    let got = up.wait_for_requests(2).await;
    assert_identity(&got[0], "alice", "viewer,operator", "jwt");
    assert_identity(&got[1], "alice", "viewer,operator", "jwt");

    // Another unknown kid within 30 s is refused without asking the issuer again.
    issuer.answer(Answer::json(jwks(&[&first, &second, &third])));
    let resp = get(
        &gw,
        "/api/z",
        &[("authorization", &bearer(&third.sign(&claims())))],
    )
    .await;
    assert_invalid_token(&resp);
    assert_eq!(issuer.calls(), 2, "unknown-kid refetches are rate limited");
    assert_eq!(up.count(), 2);
}

// ---------------------------------------------------------------------------- external auth

/// `[auth.external]` caching nothing: every request asks.
const NO_CACHE: &str = "cache_ttl = \"0s\"\nnegative_cache_ttl = \"0s\"";
/// `[auth.external]` caching allows and denials for a minute.
const CACHE: &str = "cache_ttl = \"60s\"\nnegative_cache_ttl = \"60s\"";

/// A gateway whose `/api` is `auth = ["external"]` against `url` (POST, forwarding x-token,
/// authorization and cookie, copying x-user and x-tenant, 500 ms timeout); `/public` is public.
/// `external_extra` adds `[auth.external]` keys. Files are not watched, and the startup rescan
/// is over before it returns: every reload empties the decision cache, and these tests count
/// auth calls.
async fn external_gateway(url: &str, external_extra: &str) -> (TestGateway, Upstream) {
    let up = Upstream::text("upstream ok").await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nwatch_files = false\n\n\
         [auth]\ntoken_headers = [\"x-token\"]\n\n[auth.external]\nurl = \"{url}\"\nmethod = \"POST\"\n\
         forward_headers = [\"x-token\", \"authorization\", \"cookie\"]\ncopy_headers = [\"x-user\", \"x-tenant\"]\n\
         timeout = \"500ms\"\n{external_extra}\n{}{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        protected("/api", "[\"external\"]", ""),
        route_toml("/public", "api-service", ""),
    );
    let gw = Layout::new().start(&config).await;
    gw.gateway().reload().await;
    (gw, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_allow_sends_copy_headers_upstream_with_method_external() {
    let auth = Scripted::start(
        Answer::status(200)
            .header("x-user", "alice")
            .header("x-tenant", "t-1")
            .header("x-internal", "not for upstream")
            .body("ok"),
    )
    .await;
    let (gw, up) = external_gateway(&auth.url("/check"), NO_CACHE).await;

    let resp = get(&gw, "/api/items?x=1", &[("x-token", "keptn-token")]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "upstream ok");
    assert_eq!(auth.calls(), 1);

    let got = up.single_request();
    assert_eq!(got.uri, "/api/items?x=1");
    assert_eq!(got.header_all("x-user"), ["alice"]);
    assert_eq!(got.header_all("x-tenant"), ["t-1"]);
    assert_eq!(got.header("x-internal"), None);
    assert_eq!(got.header("x-auth-subject"), Some("alice"));
    assert_eq!(got.header("x-auth-method"), Some("external"));
    assert_eq!(got.header("x-token"), Some("keptn-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_401_403_and_429_pass_through_with_body_challenge_and_retry_after() {
    let auth = Scripted::start(Answer::status(401)).await;
    let (gw, up) = external_gateway(&auth.url("/check"), NO_CACHE).await;

    let cases = [
        Answer::status(401)
            .header("content-type", "application/json")
            .header("www-authenticate", "Basic realm=\"keptn\"")
            .body("{\"code\":401,\"message\":\"incorrect api key auth\"}"),
        Answer::status(403)
            .header("content-type", "text/plain")
            .body("forbidden by policy"),
        Answer::status(429)
            .header("content-type", "text/plain")
            .header("retry-after", "7")
            .body("slow down"),
    ];
    for (i, answer) in cases.iter().enumerate() {
        auth.answer(answer.clone());
        // The first asks without any credential: the auth service decides.
        let headers: &[(&str, &str)] = if i == 0 { &[] } else { &[("x-token", "t")] };
        let resp = get(&gw, "/api/x", headers).await;
        assert_eq!(resp.status.as_u16(), answer.status);
        assert_eq!(resp.text(), answer.body, "the auth service's body");
        for (name, value) in &answer.headers {
            assert_eq!(resp.header(name), Some(value.as_str()), "{name}");
        }
        assert!(resp.header("x-request-id").is_some());
        if answer.status != 401 {
            assert_eq!(resp.header("www-authenticate"), None);
        }
        if answer.status != 429 {
            assert_eq!(resp.header("retry-after"), None);
        }
    }
    assert_eq!(auth.calls(), 3);
    assert_eq!(
        auth.requests()[0].header("x-token"),
        None,
        "asked without a credential"
    );
    assert_untouched(&up, "denials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_5xx_gets_503_auth_service_unavailable() {
    let auth = Scripted::start(Answer::status(500).body("boom")).await;
    let (gw, up) = external_gateway(&auth.url("/check"), NO_CACHE).await;

    for status in [500, 502, 503] {
        auth.answer(Answer::status(status).body("internal detail"));
        let resp = get(&gw, "/api/x", &[("x-token", "t")]).await;
        assert_eq!(resp.error(503), "auth service unavailable", "{status}");
        assert!(!resp.text().contains("internal detail"));
    }
    assert_eq!(auth.calls(), 3);
    assert_untouched(&up, "auth service failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_timeout_gets_503() {
    let (auth, gate) = Upstream::held().await;
    let (gw, up) = external_gateway(&format!("http://{}/check", auth.addr), NO_CACHE).await;

    let started = std::time::Instant::now();
    let resp = get(&gw, "/api/x", &[("x-token", "t")]).await;
    assert_eq!(resp.error(503), "auth service unavailable");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered after the 500 ms timeout, took {:?}",
        started.elapsed()
    );
    assert_eq!(auth.count(), 1);
    assert_untouched(&up, "auth timeout");
    gate.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_refused_connection_gets_503() {
    let (gw, up) =
        external_gateway(&format!("http://{}/check", Upstream::refusing()), NO_CACHE).await;

    let resp = get(&gw, "/api/x", &[("x-token", "t")]).await;
    assert_eq!(resp.error(503), "auth service unavailable");
    assert_untouched(&up, "auth refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_unexpected_status_gets_500() {
    let auth = Scripted::start(Answer::status(418).body("teapot")).await;
    let (gw, up) = external_gateway(&auth.url("/check"), NO_CACHE).await;

    let resp = get(&gw, "/api/x", &[("x-token", "t")]).await;
    assert_eq!(resp.error(500), "unexpected auth service status");
    auth.answer(Answer::status(302).header("location", "https://login.example/"));
    let resp = get(&gw, "/api/x", &[("x-token", "t")]).await;
    assert_eq!(resp.error(500), "unexpected auth service status");
    assert_eq!(resp.header("location"), None);
    assert_eq!(auth.calls(), 2);
    assert_untouched(&up, "unexpected auth status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_auth_request_has_no_body_no_upgrade_and_forwarded_headers() {
    let auth = Scripted::start(Answer::status(204)).await;
    let (gw, up) = external_gateway(&auth.url("/v1/auth"), NO_CACHE).await;

    let resp = gw
        .client()
        .send(
            Request::post("/api/items?name=x&page=2")
                .header("x-token", "keptn-token")
                .header("cookie", "session=abc")
                .header("content-type", "application/json")
                .header("x-forwarded-for", "203.0.113.9")
                .header("x-forwarded-method", "DELETE")
                .header("x-unrelated", "1")
                .header("connection", "upgrade")
                .header("upgrade", "h2c")
                .body(full("{\"secret\":\"body\"}"))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    let asked = auth.server.single_request();
    assert_eq!(asked.method, Method::POST);
    assert_eq!(asked.uri, "/v1/auth");
    assert!(asked.body.is_empty(), "no body: {:?}", asked.body);
    assert_eq!(asked.header("content-length"), Some("0"));
    assert_eq!(asked.header("transfer-encoding"), None);
    assert_eq!(asked.header("upgrade"), None);
    assert!(
        asked
            .header("connection")
            .is_none_or(|c| !c.to_ascii_lowercase().contains("upgrade")),
        "connection: {:?}",
        asked.header("connection")
    );
    assert_eq!(asked.header("x-forwarded-method"), Some("POST"));
    assert_eq!(
        asked.header("x-forwarded-uri"),
        Some("/api/items?name=x&page=2")
    );
    assert_eq!(
        asked.header_all("x-forwarded-for"),
        ["127.0.0.1"],
        "the client IP, not what an untrusted client claims"
    );
    assert_eq!(asked.header("x-token"), Some("keptn-token"));
    assert_eq!(asked.header("cookie"), Some("session=abc"));
    assert_eq!(asked.header("content-type"), None, "only forward_headers");
    assert_eq!(asked.header("x-unrelated"), None, "only forward_headers");
    assert_eq!(
        asked.header("host"),
        Some(auth.server.addr.to_string().as_str())
    );
    assert!(asked.header("x-request-id").is_some());

    let got = up.single_request();
    assert_eq!(got.method, Method::POST);
    assert_eq!(
        &got.body[..],
        b"{\"secret\":\"body\"}",
        "the upstream gets the body"
    );
    assert_eq!(got.header("upgrade"), None);
    assert_eq!(got.header("x-auth-method"), Some("external"));
    assert!(
        got.header("x-auth-subject")
            .is_some_and(|s| s.starts_with("external:")),
        "no copy header named a subject: the credential's hash does (SPEC §8.3): {:?}",
        got.header("x-auth-subject")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_allow_is_cached_per_credential() {
    let auth = Scripted::start(Answer::status(200).header("x-user", "alice")).await;
    let config = format!("{CACHE}\ncache_key = \"credential\"");
    let (gw, up) = external_gateway(&auth.url("/check"), &config).await;

    for path in ["/api/a", "/api/b", "/api/c?q=1"] {
        let resp = get(&gw, path, &[("x-token", "token-a")]).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert_eq!(auth.calls(), 1, "one auth call for one credential");
    let resp = get(&gw, "/api/a", &[("x-token", "token-b")]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(auth.calls(), 2, "another credential asks again");

    let got = up.wait_for_requests(4).await;
    for request in &got {
        assert_eq!(
            request.header_all("x-user"),
            ["alice"],
            "cached copy headers too"
        );
        assert_eq!(request.header("x-auth-method"), Some("external"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_401_is_cached_for_negative_ttl_but_429_is_not() {
    let body = "{\"code\":401,\"message\":\"incorrect api key auth\"}";
    let auth = Scripted::start(
        Answer::status(401)
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    let (gw, up) = external_gateway(&auth.url("/check"), CACHE).await;

    for _ in 0..2 {
        let resp = get(&gw, "/api/x", &[("x-token", "wrong")]).await;
        assert_eq!(resp.status, 401);
        assert_eq!(resp.text(), body);
    }
    assert_eq!(auth.calls(), 1, "the denial was cached");
    // The service would now allow it, but the cached denial stands until negative_cache_ttl.
    auth.answer(Answer::status(200));
    let resp = get(&gw, "/api/x", &[("x-token", "wrong")]).await;
    assert_eq!(resp.status, 401);
    assert_eq!(auth.calls(), 1);

    auth.answer(Answer::status(429).header("retry-after", "3"));
    for _ in 0..2 {
        let resp = get(&gw, "/api/x", &[("x-token", "busy")]).await;
        assert_eq!(resp.status, 429);
        assert_eq!(resp.header("retry-after"), Some("3"));
    }
    assert_eq!(auth.calls(), 3, "429 is never cached");
    assert_untouched(&up, "denials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_empties_the_external_auth_cache() {
    let auth = Scripted::start(Answer::status(200)).await;
    let (gw, up) = external_gateway(&auth.url("/check"), CACHE).await;

    for _ in 0..2 {
        let resp = get(&gw, "/api/x", &[("x-token", "token-a")]).await;
        assert_eq!(resp.status, 200);
    }
    assert_eq!(auth.calls(), 1);

    let before = gw.gateway().shared().runtime.load().generation;
    let config = gw.file("gateway.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n# touched by reload_empties_the_external_auth_cache\n");
    std::fs::write(&config, text).unwrap();
    let outcome = gw.gateway().reload().await;
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

    let resp = get(&gw, "/api/x", &[("x-token", "token-a")]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(auth.calls(), 2, "the reload emptied the cache");
    assert_eq!(up.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_copy_headers_are_stripped_on_every_route() {
    let auth = Scripted::start(Answer::status(200)).await;
    let (gw, up) = external_gateway(&auth.url("/check"), NO_CACHE).await;

    // The auth service names no user: whatever the client claimed must not arrive.
    let raw = raw_get(
        &gw,
        "/api/x",
        &[
            "x-token: t",
            "X-User: mallory",
            "x_user: mallory",
            "X-TENANT: evil",
        ],
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    // The auth service names one: only its value arrives.
    auth.answer(Answer::status(200).header("x-user", "alice"));
    let raw = raw_get(&gw, "/api/y", &["x-token: t", "X-User: mallory"]).await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    // Public routes too.
    let raw = raw_get(&gw, "/public/z", &["X-User: mallory", "x_tenant: evil"]).await;
    assert_eq!(raw.status, 200, "{}", raw.text());

    let got = up.wait_for_requests(3).await;
    assert_no_header_folding_to(&got[0], "x-user");
    assert_no_header_folding_to(&got[0], "x-tenant");
    assert_eq!(got[1].header_all("x-user"), ["alice"]);
    assert_eq!(
        identity_like_headers(&got[2], &["x-user", "x-tenant"]),
        Vec::<String>::new()
    );
}

/// No header whose name folds (case, `_` = `-`) to `name`.
fn assert_no_header_folding_to(got: &Recorded, name: &str) {
    let spoofed = identity_like_headers(got, &[name])
        .into_iter()
        .filter(|n| !n.starts_with("x-auth-"))
        .collect::<Vec<_>>();
    assert!(spoofed.is_empty(), "{spoofed:?} reached the upstream");
}
