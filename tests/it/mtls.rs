//! Client-certificate identity (issue 13 part 2; SPEC `[tls] client_ca`, route kind `mtls`):
//! certificates made with rcgen, verified at the real TLS handshake, identity headers asserted
//! at a recording upstream, roles from `[[auth.mtls.roles]]`, refusals that never reach the
//! upstream, and a CA rotation applied live while an open connection keeps working.

use std::time::Duration;

use http::Request;

use crate::support::auth::Layout;
use crate::support::mtls_client::{ClientCa, ClientId, Names};
use crate::support::reload::{RELOAD_WAIT, settle, wait_status};
use crate::support::{Client, TestGateway, Upstream, empty, upstream_toml};

const SPIFFE_DEPLOYER: &str = "spiffe://mesh/ns/prod/sa/deployer";
const SPIFFE_WEB: &str = "spiffe://mesh/ns/prod/sa/web";

/// `[tls]` with the client CA bundle at `certs/clients.pem`, the role mapping, a token store and
/// routes: `/svc` (mtls, any verified client), `/deploy` (mtls, operator), `/mixed` (token or
/// mtls, viewer), `/limited` (mtls, 1 request per identity), `/public`.
fn config(echo: &Upstream) -> String {
    format!(
        r#"
[tls]
cert = "certs/tls.crt"
key = "certs/tls.key"
client_ca = "certs/clients.pem"

[auth]
tokens = "tokens.toml"

[[auth.mtls.roles]]
subject = "spiffe://mesh/ns/*/sa/deployer"
roles = ["operator"]

[[auth.mtls.roles]]
subject = "spiffe://mesh/**"
roles = ["viewer"]

[rate_limits.one]
key = "identity"
rate = "1/h"
burst = 1
{upstream}
[[routes]]
path = "/svc"
upstream = "echo"
auth = ["mtls"]

[[routes]]
path = "/deploy"
upstream = "echo"
auth = ["mtls"]
roles = ["operator"]

[[routes]]
path = "/mixed"
upstream = "echo"
auth = ["token", "mtls"]
roles = ["viewer"]

[[routes]]
path = "/limited"
upstream = "echo"
auth = ["mtls"]
rate_limit = "one"

[[routes]]
path = "/public"
upstream = "echo"
auth = ["public"]
"#,
        upstream = upstream_toml("echo", &[echo.addr], "")
    )
}

/// A gateway trusting `ca` for client certificates, plus `setup` run on its folder first.
async fn gateway_with(ca: &ClientCa, echo: &Upstream, setup: impl FnOnce(&Layout)) -> TestGateway {
    let layout = Layout::new();
    layout.write("certs/clients.pem", &ca.pem);
    setup(&layout);
    layout.start(&config(echo)).await
}

async fn gateway(ca: &ClientCa, echo: &Upstream) -> TestGateway {
    gateway_with(ca, echo, |layout| {
        layout.write("tokens.toml", "");
    })
    .await
}

fn get_with_spoofed_identity(path: &str) -> Request<crate::support::Body> {
    Request::get(path)
        .header("x-auth-subject", "admin")
        .header("X_Auth_Roles", "admin")
        .header("x-auth-method", "token")
        .body(empty())
        .unwrap()
}

#[tokio::test]
async fn verified_certificate_puts_its_identity_upstream_and_spoofs_are_replaced() {
    let ca = ClientCa::new("mesh CA");
    let echo = Upstream::echo().await;
    let gw = gateway(&ca, &echo).await;
    let deployer = ca.issue_uri(SPIFFE_DEPLOYER);
    for client in [deployer.h1(gw.https), deployer.h2(gw.https)] {
        let resp = client.send(get_with_spoofed_identity("/svc/x")).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let seen = echo.wait_for_requests(2).await;
    for req in &seen {
        assert_eq!(req.header_all("x-auth-subject"), [SPIFFE_DEPLOYER]);
        assert_eq!(req.header_all("x-auth-method"), ["mtls"]);
        // Every matching rule adds its roles, in rule order.
        assert_eq!(req.header_all("x-auth-roles"), ["operator,viewer"]);
        assert!(req.header("x_auth_roles").is_none(), "spoof removed");
    }

    // DNS SAN when there is no URI SAN; CN when there is neither.
    let dns = ca.issue(Names {
        dns: Some("billing.mesh.local"),
        cn: Some("not-the-subject"),
        ..Names::default()
    });
    let cn = ca.issue(Names {
        cn: Some("deploy-bot"),
        ..Names::default()
    });
    for (id, subject) in [(&dns, "billing.mesh.local"), (&cn, "deploy-bot")] {
        let resp = id
            .h1(gw.https)
            .send(get_with_spoofed_identity("/svc"))
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let last = echo.requests().pop().unwrap();
        assert_eq!(last.header_all("x-auth-subject"), [subject]);
        assert_eq!(last.header_all("x-auth-method"), ["mtls"]);
        assert!(
            last.header("x-auth-roles").is_none(),
            "no rule matches {subject}"
        );
    }
}

#[tokio::test]
async fn role_mapping_decides_403_or_200() {
    let ca = ClientCa::new("mesh CA");
    let echo = Upstream::echo().await;
    let gw = gateway(&ca, &echo).await;
    let deployer = ca.issue_uri(SPIFFE_DEPLOYER).h1(gw.https);
    let web = ca.issue_uri(SPIFFE_WEB).h1(gw.https);
    let outsider = ca.issue_uri("spiffe://elsewhere/sa/deployer").h1(gw.https);

    assert_eq!(deployer.get("/deploy").await.status, 200);
    assert_eq!(
        web.get("/deploy").await.error(403),
        "role operator required"
    );
    assert_eq!(
        outsider.get("/deploy").await.error(403),
        "role operator required"
    );
    // A route without roles admits any verified client, matched by a rule or not.
    assert_eq!(outsider.get("/svc").await.status, 200);
    // viewer from the broad rule is enough on /mixed; the outsider has no role at all.
    assert_eq!(web.get("/mixed").await.status, 200);
    assert_eq!(
        outsider.get("/mixed").await.error(403),
        "role viewer required"
    );

    let paths: Vec<String> = echo.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(
        paths,
        ["/deploy", "/svc", "/mixed"],
        "refusals never reach the upstream"
    );
}

#[tokio::test]
async fn no_certificate_on_an_mtls_route_is_401_and_public_routes_need_none() {
    let ca = ClientCa::new("mesh CA");
    let echo = Upstream::echo().await;
    let mut token = String::new();
    let gw = gateway_with(&ca, &echo, |layout| {
        token = layout.mint("ci-bot", &["viewer"]);
    })
    .await;
    let plain = gw.client();

    let resp = plain.get("/svc").await;
    assert_eq!(resp.error(401), "client certificate required");
    assert!(
        resp.header("www-authenticate").is_none(),
        "no Bearer challenge"
    );
    // A token does not stand in for a certificate on a route that accepts only mtls.
    let with_token = Request::get("/svc")
        .header("authorization", format!("Bearer {token}"))
        .body(empty())
        .unwrap();
    assert_eq!(
        plain.send(with_token).await.error(401),
        "client certificate required"
    );
    assert_eq!(
        gw.h2_client().get("/deploy").await.error(401),
        "client certificate required"
    );
    assert_eq!(echo.count(), 0, "the upstream saw nothing");

    // Public and token routes work without a certificate on the same listener.
    assert_eq!(plain.get("/public/a").await.status, 200);
    let mixed = Request::get("/mixed")
        .header("authorization", format!("Bearer {token}"))
        .body(empty())
        .unwrap();
    assert_eq!(plain.send(mixed).await.status, 200);
    // A route accepting token or mtls, with neither: the usual Bearer challenge.
    let resp = plain.get("/mixed").await;
    assert_eq!(resp.error(401), "missing credentials");
    assert!(resp.header("www-authenticate").is_some());
    let seen = echo.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header_all("x-auth-method"), ["token"]);
    assert_eq!(seen[1].header_all("x-auth-subject"), ["ci-bot"]);
}

/// A request over a fresh connection presenting `id`: the status, or `None` if the connection
/// was refused (TLS 1.3 clients learn of a refused certificate only on their first read).
async fn try_status(client: &Client, path: &str) -> Option<u16> {
    let req = Request::get(path).body(empty()).unwrap();
    match client.try_send_streaming(req).await {
        Ok(resp) => Some(resp.status().as_u16()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_at_the_handshake() {
    let ca = ClientCa::new("mesh CA");
    let rogue_ca = ClientCa::new("rogue CA");
    let echo = Upstream::echo().await;
    let gw = gateway(&ca, &echo).await;
    // Same subject as a trusted client: only the issuer differs.
    let rogue: ClientId = rogue_ca.issue_uri(SPIFFE_DEPLOYER);

    // TLS 1.2: the client's own handshake fails.
    let tls12 = crate::support::within(
        "TLS 1.2 handshake",
        crate::support::client::connect_tls(
            gw.https,
            "localhost",
            rogue.tls_config(&[b"http/1.1"], &[&rustls::version::TLS12]),
        ),
    )
    .await;
    assert!(
        tls12.is_err(),
        "TLS 1.2 handshake with a rogue certificate must fail"
    );
    assert_eq!(try_status(&rogue.h1_tls12(gw.https), "/public").await, None);
    // TLS 1.3 (h1 and h2): the connection is refused before any request is read, even for a
    // public route.
    for client in [rogue.h1(gw.https), rogue.h2(gw.https)] {
        for path in ["/svc", "/public"] {
            assert_eq!(try_status(&client, path).await, None, "{path}");
        }
    }
    assert_eq!(echo.count(), 0, "nothing reached the upstream");
    // Control: the trusted CA's certificate for the same subject works.
    assert_eq!(
        try_status(&ca.issue_uri(SPIFFE_DEPLOYER).h1(gw.https), "/svc").await,
        Some(200)
    );
}

#[tokio::test]
async fn identity_keyed_rate_limits_count_per_certificate_subject() {
    let ca = ClientCa::new("mesh CA");
    let echo = Upstream::echo().await;
    let gw = gateway(&ca, &echo).await;
    let web = ca.issue_uri(SPIFFE_WEB);
    let deployer = ca.issue_uri(SPIFFE_DEPLOYER);
    assert_eq!(web.h1(gw.https).get("/limited").await.status, 200);
    // A new certificate for the same subject shares the budget: it is the subject that counts.
    assert_eq!(
        ca.issue_uri(SPIFFE_WEB)
            .h1(gw.https)
            .get("/limited")
            .await
            .error(429),
        "rate limit exceeded"
    );
    assert_eq!(deployer.h1(gw.https).get("/limited").await.status, 200);
}

#[tokio::test]
async fn ca_rotation_applies_to_new_handshakes_and_open_connections_keep_theirs() {
    let old_ca = ClientCa::new("mesh CA 2026");
    let new_ca = ClientCa::new("mesh CA 2027");
    let echo = Upstream::echo().await;
    let gw = gateway(&old_ca, &echo).await;
    settle(&gw).await;
    let old_id = old_ca.issue_uri(SPIFFE_DEPLOYER);
    let new_id = new_ca.issue_uri(SPIFFE_WEB);
    let mut open = old_id.keep_alive(gw.https).await;
    assert_eq!(open.get("/deploy").await.status, 200);
    assert_eq!(
        try_status(&new_id.h1(gw.https), "/svc").await,
        None,
        "not trusted yet"
    );

    crate::support::files::save_atomically(&gw.file("certs/clients.pem"), &new_ca.pem);
    let new_client = new_id.h1(gw.https);
    let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
    while try_status(&new_client, "/svc").await != Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new CA was not trusted within {RELOAD_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        try_status(&old_id.h1(gw.https), "/svc").await,
        None,
        "old CA no longer trusted"
    );
    // The connection opened under the old bundle keeps the identity it proved.
    let resp = open.get("/deploy").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let last = echo.requests().pop().unwrap();
    assert_eq!(last.header_all("x-auth-subject"), [SPIFFE_DEPLOYER]);
}

#[tokio::test]
async fn a_broken_bundle_is_refused_at_start_and_on_reload() {
    let ca = ClientCa::new("mesh CA");
    let echo = Upstream::echo().await;

    // At start: a clear error naming the file.
    let layout = Layout::new();
    layout.write("certs/clients.pem", "");
    layout.write("tokens.toml", "");
    let config_path = layout.path("gateway.toml");
    std::fs::write(
        &config_path,
        crate::support::gateway::compose_config(&config(&echo)),
    )
    .unwrap();
    let error = gatehouse::server::Gateway::start(&config_path)
        .await
        .unwrap_err();
    let error = format!("{error:#}");
    assert!(
        error.contains("clients.pem") && error.contains("no CERTIFICATE"),
        "{error}"
    );

    // On reload: refused, the old bundle stays in use.
    let gw = gateway(&ca, &echo).await;
    let before = settle(&gw).await;
    let id = ca.issue_uri(SPIFFE_WEB);
    std::fs::write(
        gw.file("certs/clients.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let status = wait_status(&gw, "the broken bundle refused", |s| !s.ok).await;
    let error = status.error.clone().unwrap_or_default();
    assert!(error.contains("clients.pem"), "{error}");
    assert_eq!(status.generation, before.generation, "old runtime kept");
    assert_eq!(id.h1(gw.https).get("/svc").await.status, 200);
}

#[test]
fn config_errors_name_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let text = r#"
[auth.mtls]
roles = [{ subject = "a***b", roles = ["viewer"] }, { subject = "ok", roles = [] }]

[[upstreams]]
name = "u"
targets = ["127.0.0.1:1"]

[[routes]]
path = "/svc"
upstream = "u"
auth = ["mtls"]
"#;
    let errors = gatehouse::config::parse(&path, text)
        .unwrap_err()
        .to_string();
    for expected in [
        "auth.mtls: needs [tls] client_ca",
        "auth.mtls.roles[0].subject: \"a***b\"",
        "auth.mtls.roles[1].roles: is empty",
        "routes[0].auth[0]: \"mtls\" needs [tls] client_ca",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    // With client_ca set it loads, and nothing says mTLS is not built.
    let ok = text
        .replace("a***b", "spiffe://mesh/**")
        .replace("roles = [] ", "roles = [\"viewer\"] ");
    let ok = format!("[tls]\nclient_ca = \"clients.pem\"\n{ok}");
    let config = gatehouse::config::parse(&path, &ok).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.auth.mtls.unwrap().roles.len(), 2);
}

/// `gatehouse check` on a config with `client_ca`: exit code and everything printed.
async fn check(ca_pem: &str) -> (i32, String) {
    let echo = Upstream::echo().await;
    let layout = Layout::new();
    layout.write("certs/clients.pem", ca_pem);
    layout.write("tokens.toml", "");
    let path = layout.path("gateway.toml");
    std::fs::write(
        &path,
        crate::support::gateway::compose_config(&config(&echo)),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "-c", path.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = crate::support::within("gatehouse check", output)
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn check_shows_the_client_ca_and_refuses_a_bad_bundle() {
    let one = ClientCa::new("mesh CA");
    let two = ClientCa::new("mesh CA next");
    let (code, text) = check(&format!("{}{}", one.pem, two.pem)).await;
    assert_eq!(code, 0, "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("client_ca"))
        .unwrap_or_else(|| panic!("no client_ca line:\n{text}"));
    assert!(
        line.contains("clients.pem") && line.contains("2 CA certificate(s)"),
        "{line}"
    );
    assert!(line.contains("2 [[auth.mtls.roles]] rule(s)"), "{line}");
    assert!(text.contains("/svc  auth mtls"), "{text}");
    assert!(!text.contains("not built"), "{text}");

    let (code, text) = check("").await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("tls.client_ca:") && text.contains("clients.pem"),
        "{text}"
    );
    assert!(text.contains("no CERTIFICATE block found"), "{text}");
}
