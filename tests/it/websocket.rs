//! WebSocket tunnelling (SPEC §2 `websocket`, `allowed_origins`; §4): echo through the
//! gateway, the Origin rule, and no tunnel on other routes or for other `Upgrade`s.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::{TestGateway, Upstream, Ws, route_toml, upstream_toml, within};

/// A gateway with `/ws` (websocket = true, `ws_extra` keys) and `/plain` (websocket = false),
/// both in front of a WebSocket echo upstream.
async fn ws_gateway(ws_extra: &str) -> (TestGateway, Upstream) {
    let up = Upstream::websocket_echo().await;
    let config = format!(
        "{}{}{}",
        upstream_toml("echo", &[up.addr], ""),
        route_toml("/ws", "echo", &format!("websocket = true\n{ws_extra}")),
        route_toml("/plain", "echo", "")
    );
    (TestGateway::start(&config).await, up)
}

async fn assert_echoes(ws: &mut Ws) {
    within("send text", ws.send(Message::text("hello gatehouse")))
        .await
        .unwrap();
    let echoed = within("text echo", ws.next())
        .await
        .expect("stream open")
        .unwrap();
    assert_eq!(echoed, Message::text("hello gatehouse"));

    let payload = vec![0u8, 1, 2, 254, 255];
    within("send binary", ws.send(Message::binary(payload.clone())))
        .await
        .unwrap();
    let echoed = within("binary echo", ws.next())
        .await
        .expect("stream open")
        .unwrap();
    assert_eq!(echoed, Message::binary(payload));
}

fn expect_refused(
    result: Result<Ws, tungstenite::Error>,
) -> tungstenite::http::Response<Option<Vec<u8>>> {
    match result {
        Ok(_) => panic!("the WebSocket handshake must not succeed"),
        Err(tungstenite::Error::Http(response)) => *response,
        Err(other) => panic!("expected an HTTP answer to the handshake, got {other}"),
    }
}

fn json_error(response: &tungstenite::http::Response<Option<Vec<u8>>>) -> String {
    let body = response.body().as_deref().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    json["error"].as_str().expect("error text").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echoes_through_the_gateway() {
    let (gw, up) = ws_gateway("").await;

    let mut ws = gw
        .websocket("/ws/echo?room=1", None)
        .await
        .expect("handshake without Origin (a non-browser client) is allowed");
    assert_echoes(&mut ws).await;
    within("close", ws.close(None)).await.unwrap();

    let got = up.single_request();
    assert_eq!(got.uri, "/ws/echo?room=1");
    assert!(
        got.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
        "upstream got Upgrade: {:?}",
        got.header("upgrade")
    );
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_websocket_is_allowed() {
    let (gw, _up) = ws_gateway("").await;
    let origin = format!("https://localhost:{}", gw.https.port());

    let mut ws = gw
        .websocket("/ws", Some(&origin))
        .await
        .expect("Origin host equal to Host is same origin");
    assert_echoes(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_websocket_gets_403() {
    let (gw, up) = ws_gateway("").await;

    let response = expect_refused(gw.websocket("/ws", Some("https://evil.example")).await);
    assert_eq!(response.status(), 403);
    assert_eq!(json_error(&response), "origin not allowed");
    assert!(response.headers().get("x-request-id").is_some());
    assert_eq!(
        up.count(),
        0,
        "a refused handshake never reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_admit_only_listed_origins() {
    let (gw, up) = ws_gateway("allowed_origins = [\"https://app.example.test\"]").await;

    let mut ws = gw
        .websocket("/ws", Some("https://app.example.test"))
        .await
        .expect("listed Origin is allowed");
    assert_echoes(&mut ws).await;

    let response = expect_refused(gw.websocket("/ws", Some("https://evil.example")).await);
    assert_eq!(response.status(), 403);
    assert_eq!(json_error(&response), "origin not allowed");
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_on_a_non_websocket_route_is_not_tunnelled() {
    let (gw, up) = ws_gateway("").await;

    let response = expect_refused(gw.websocket("/plain/socket", None).await);
    assert_ne!(response.status(), 101);
    for got in up.requests() {
        assert!(
            got.header("upgrade").is_none(),
            "upstream got Upgrade on /plain: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_dropped_not_tunnelled() {
    let (gw, up) = ws_gateway("").await;

    for path in ["/plain/x", "/ws/x"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            gw.https.port()
        );
        let raw = gw.raw_exchange(request.as_bytes()).await;
        assert_eq!(
            raw.status,
            200,
            "{path}: {:?}",
            String::from_utf8_lossy(&raw.bytes)
        );
        assert_eq!(raw.text(), "not a websocket handshake");
    }
    let requests = up.requests();
    assert_eq!(requests.len(), 2);
    for got in requests {
        assert!(
            got.header("upgrade").is_none(),
            "{}: Upgrade {:?}",
            got.uri,
            got.header("upgrade")
        );
        assert!(
            got.header("http2-settings").is_none(),
            "{}: HTTP2-Settings kept",
            got.uri
        );
    }
}
