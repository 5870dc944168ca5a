//! The request path's order and its one way out for errors (issue 10, "the spine"):
//! the WebSocket Origin rule runs before rate limiting, so a foreign-Origin handshake is 403
//! every time and spends none of the route's budget; and a refusal raised inside forwarding (an
//! upstream that switches protocols unasked) leaves through the pipeline like every other
//! step's — with the request's id and counted in the metrics.

use http::{Request, Response, StatusCode};
use tokio_tungstenite::tungstenite;

use crate::support::{TestGateway, Upstream, Ws, empty, route_toml, upstream_toml};

/// `gatehouse_<family>{<labels>}`'s value on the admin `/metrics`, if exported.
async fn sample(gw: &TestGateway, series: &str) -> Option<u64> {
    let resp = gw.admin_get("/metrics").await;
    assert_eq!(resp.status, 200);
    let prefix = format!("{series} ");
    resp.text()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(|n| n.parse().unwrap()))
}

/// The gateway's answer to a WebSocket handshake it refused.
fn refused(result: Result<Ws, tungstenite::Error>) -> tungstenite::http::Response<Option<Vec<u8>>> {
    match result {
        Ok(_) => panic!("the WebSocket handshake must be refused"),
        Err(tungstenite::Error::Http(response)) => *response,
        Err(other) => panic!("expected an HTTP answer to the handshake, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_handshakes_get_403_and_spend_no_rate_budget() {
    let up = Upstream::websocket_echo().await;
    let config = format!(
        "{}{}\n[rate_limits.tight]\nkey = \"route\"\nrate = \"1/min\"\nburst = 1\n",
        upstream_toml("echo", &[up.addr], ""),
        route_toml("/ws", "echo", "websocket = true\nrate_limit = \"tight\""),
    );
    let gw = TestGateway::start(&config).await;

    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(refused(
            gw.websocket("/ws", Some("https://evil.example")).await,
        ));
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    // The old order (rate limit first) gave [403, 429, 429]: the first refusal spent the token.
    assert_eq!(statuses, [403, 403, 403], "foreign-Origin handshakes");
    for response in &answers {
        assert!(
            response.headers().get("ratelimit").is_none(),
            "the limiter is not asked for a foreign Origin: {:?}",
            response.headers()
        );
    }
    assert_eq!(
        up.count(),
        0,
        "a refused handshake never reaches the upstream"
    );
    assert_eq!(
        sample(
            &gw,
            "gatehouse_auth_failures_total{route=\"/ws\",reason=\"origin\"}"
        )
        .await,
        Some(3)
    );
    assert_eq!(
        sample(&gw, "gatehouse_rate_limited_total{route=\"/ws\"}").await,
        None
    );

    // The budget is whole: a same-origin handshake still gets its 101 ...
    let origin = format!("https://localhost:{}", gw.https.port());
    let ws = gw.websocket("/ws", Some(&origin)).await;
    assert!(
        ws.is_ok(),
        "same-origin handshake after the refusals: {:?}",
        ws.err()
    );
    assert_eq!(up.count(), 1);
    // ... and it was the only token: the limit is live, so the 403s above prove something.
    let response = refused(gw.websocket("/ws", Some(&origin)).await);
    assert_eq!(response.status(), 429);
    assert_eq!(
        sample(&gw, "gatehouse_rate_limited_total{route=\"/ws\"}").await,
        Some(1)
    );
    assert_eq!(up.count(), 1);
}

/// An upstream that answers every request `101 Switching Protocols`, asked or not.
async fn switching_upstream() -> Upstream {
    Upstream::spawn(|_| {
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(empty())
            .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unasked_101_from_upstream_is_a_502_with_the_request_id_and_counted() {
    let up = switching_upstream().await;
    let config = format!(
        "{}{}",
        upstream_toml("switcher", &[up.addr], ""),
        route_toml("/api", "switcher", ""),
    );
    let gw = TestGateway::start(&config).await;
    let series = "gatehouse_upstream_errors_total{upstream=\"switcher\",kind=\"unavailable\"}";
    assert_eq!(sample(&gw, series).await, None);

    let request = Request::get("/api/x")
        .header("x-request-id", "spine-101-check")
        .body(empty())
        .unwrap();
    let resp = gw.client().send(request).await;

    // `error` checks the JSON `request_id` equals the `x-request-id` header.
    assert_eq!(resp.error(502), "upstream switcher unavailable");
    assert_eq!(resp.json()["request_id"], "spine-101-check");
    assert_eq!(resp.header("x-request-id"), Some("spine-101-check"));
    assert_eq!(up.count(), 1, "the upstream was asked once");
    assert_eq!(sample(&gw, series).await, Some(1));
}
