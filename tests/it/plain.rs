//! The cleartext listener (SPEC §2 `plain_listen`, `plain_mode`): `redirect` answers 308 to
//! the TLS listener, `serve` proxies like the TLS listener.

use http::Request;
use http::header::{HOST, LOCATION};

use crate::support::client::{get_plain, send_plain};
use crate::support::{TestGateway, Upstream, empty, route_toml, upstream_toml};

async fn plain_gateway(mode: &str) -> (TestGateway, Upstream) {
    let up = Upstream::echo().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         plain_listen = \"127.0.0.1:0\"\nplain_mode = \"{mode}\"\n{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        route_toml("/api", "api-service", "")
    );
    (TestGateway::start(&config).await, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_redirect_mode_answers_308_to_https() {
    let (gw, up) = plain_gateway("redirect").await;
    let plain = gw.plain.expect("plain listener bound");
    let tls_port = gw.https.port();

    let resp = get_plain(plain, "/api/x?q=1&r=a%2Fb").await;
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header(LOCATION.as_str()),
        Some(format!("https://localhost:{tls_port}/api/x?q=1&r=a%2Fb").as_str())
    );

    let resp = send_plain(
        plain,
        Request::get("/api/y")
            .header(HOST, "gateway.example.test")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header(LOCATION.as_str()),
        Some(format!("https://gateway.example.test:{tls_port}/api/y").as_str())
    );
    assert_eq!(up.count(), 0, "redirect mode never proxies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_serve_mode_proxies_with_http_proto() {
    let (gw, up) = plain_gateway("serve").await;
    let plain = gw.plain.expect("plain listener bound");

    let resp = get_plain(plain, "/api/x?q=1").await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("x-request-id").is_some());
    let got = up.single_request();
    assert_eq!(got.uri, "/api/x?q=1");
    assert_eq!(
        got.header("host"),
        Some(format!("localhost:{}", plain.port()).as_str())
    );
    assert_eq!(got.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);

    let missing = get_plain(plain, "/nope").await;
    assert_eq!(missing.error(404), "no route for /nope");
}
