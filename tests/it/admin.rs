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
