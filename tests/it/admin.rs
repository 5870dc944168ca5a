//! The admin listener off loopback (SPEC §6): `/config` and `POST /reload` need an `admin`
//! token; health, readiness and metrics stay open for probes and scrapers.

use std::net::SocketAddr;

use http::Request;

use crate::support::auth::Layout;
use crate::support::client::send_plain;
use crate::support::{TestGateway, empty};

/// The admin listener bound to every interface, reached through loopback only.
async fn exposed_admin() -> (TestGateway, SocketAddr, String, String) {
    let layout = Layout::new();
    let admin_token = layout.mint("ops", &["admin"]);
    let viewer_token = layout.mint("dash", &["viewer"]);
    let gw = layout
        .start("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"0.0.0.0:0\"\n\n[auth]\ntokens = \"tokens.toml\"\n")
        .await;
    let port = gw.admin.expect("admin listener").port();
    (
        gw,
        SocketAddr::from(([127, 0, 0, 1], port)),
        admin_token,
        viewer_token,
    )
}

fn request(method: &str, path: &str, token: Option<&str>) -> Request<crate::support::Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_reload_off_loopback_need_an_admin_token() {
    let (_gw, admin, admin_token, viewer_token) = exposed_admin().await;

    let anonymous = send_plain(admin, request("GET", "/config", None)).await;
    assert_eq!(anonymous.error(401), "missing credentials");
    let wrong = send_plain(admin, request("POST", "/reload", Some("not-a-token"))).await;
    assert_eq!(wrong.error(401), "invalid token");
    let viewer = send_plain(admin, request("GET", "/config", Some(&viewer_token))).await;
    assert_eq!(viewer.error(403), "role admin required");

    let config = send_plain(admin, request("GET", "/config", Some(&admin_token))).await;
    assert_eq!(config.status, 200);
    assert_eq!(config.json()["generation"], 1);
    let reload = send_plain(admin, request("POST", "/reload", Some(&admin_token))).await;
    assert_eq!(reload.status, 200);
    assert_eq!(reload.json()["ok"], true);
    assert!(
        !config.text().contains(&admin_token),
        "/config never shows a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_stay_open_off_loopback() {
    let (_gw, admin, _, _) = exposed_admin().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let resp = send_plain(admin, request("GET", path, None)).await;
        assert_eq!(resp.status, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_configured_route_never_the_request_path() {
    let up = crate::support::Upstream::echo().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        crate::support::upstream_toml("api-service", &[up.addr], ""),
        crate::support::route_toml("/api", "api-service", ""),
    ))
    .await;
    let client = crate::support::Client::h1(gw.https);
    assert_eq!(client.get("/api/v1/one").await.status, 200);
    assert_eq!(client.get("/api/v1/two").await.status, 200);
    assert_eq!(client.get("/nowhere/secret-path").await.status, 404);
    let text = gw.admin_get("/metrics").await.text();
    for line in [
        "gatehouse_requests_total{route=\"/api\",method=\"GET\",status=\"200\"} 2",
        "gatehouse_requests_total{route=\"none\",method=\"GET\",status=\"404\"} 1",
        "gatehouse_request_duration_seconds_count{route=\"/api\"} 2",
        "gatehouse_upstream_duration_seconds_count{upstream=\"api-service\"} 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    assert!(
        !text.contains("/api/v1/one") && !text.contains("secret-path"),
        "request paths are never labels"
    );
}
