//! The admin listener's health endpoints and the drain on shutdown (SPEC §6): `/readyz` turns
//! 503, listeners keep accepting for `drain_delay`, in-flight requests finish, `wait()` returns.

use crate::support::client::{Proto, connect_tls, tls_config};
use crate::support::{
    Client, TestGateway, Upstream, route_toml, static_route_toml, upstream_toml, within,
};

async fn draining_gateway(drain_delay: &str) -> (TestGateway, Upstream, crate::support::Gate) {
    let (up, gate) = Upstream::held().await;
    let config = format!(
        "[limits]\ndrain_delay = \"{drain_delay}\"\nshutdown_grace = \"20s\"\n{}{}{}",
        upstream_toml("slow", &[up.addr], "response_timeout = \"30s\""),
        route_toml("/slow", "slow", ""),
        static_route_toml("/ping", "respond = { status = 200, body = \"pong\" }")
    );
    (TestGateway::start(&config).await, up, gate)
}

/// One fresh connection and `GET /ping`; false if the gateway no longer accepts or answers.
async fn accepts_new_requests(client: &Client) -> bool {
    let attempt = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let req = http::Request::get("/ping")
            .body(crate::support::empty())
            .unwrap();
        match client.try_send_streaming(req).await {
            Ok(resp) => resp.status() == 200,
            Err(_) => false,
        }
    });
    attempt.await.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_while_serving() {
    let gw = TestGateway::start(&static_route_toml(
        "/ping",
        "respond = { status = 200, body = \"pong\" }",
    ))
    .await;

    let health = gw.admin_get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text().trim(), "ok");
    let ready = gw.admin_get("/readyz").await;
    assert_eq!(ready.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_not_ready_keeps_accepting_and_finishes_in_flight_request() {
    let (gw, up, gate) = draining_gateway("3s").await;
    assert_eq!(gw.admin_get("/readyz").await.status, 200);

    let client = gw.client();
    let in_flight = tokio::spawn(async move { client.get("/slow/report").await });
    up.wait_for_requests(1).await;

    gw.shutdown();
    let ready = gw.admin_get("/readyz").await;
    assert_eq!(ready.status, 503, "/readyz during drain: {:?}", ready.body);
    assert_eq!(
        gw.admin_get("/healthz").await.status,
        200,
        "still alive while draining"
    );
    let during = gw.get("/ping").await;
    assert_eq!(
        during.status, 200,
        "new requests are still served during drain_delay"
    );
    assert_eq!(during.text(), "pong");

    gate.open();
    let resp = within("in-flight request", in_flight).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "released");

    let https = gw.https;
    within("gateway to stop", gw.wait())
        .await
        .expect("wait() returns Ok after a clean drain");
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        connect_tls(
            https,
            "localhost",
            tls_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
        ),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a stopped gateway must not complete new TLS handshakes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_outlives_the_drain_delay() {
    let (gw, up, gate) = draining_gateway("200ms").await;

    let client = gw.client();
    let in_flight = tokio::spawn(async move { client.get("/slow/long").await });
    up.wait_for_requests(1).await;

    gw.shutdown();
    // Probe with fresh connections until the listener stops taking them: the drain delay is
    // over and graceful close has begun, with our request still held upstream.
    let probe = Client::new(
        gw.https,
        Proto::H1,
        tls_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
    );
    within("listener to stop accepting after drain_delay", async {
        while accepts_new_requests(&probe).await {}
    })
    .await;
    assert!(
        !in_flight.is_finished(),
        "the held request is still in flight"
    );

    // The gateway must not report itself stopped while a request is in flight (a process
    // exiting then would cut it off). Waiting here can only fail a wrong implementation: with
    // the request held and shutdown_grace = 20s, a correct wait() cannot return.
    let mut stopped = tokio::spawn(gw.wait());
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), &mut stopped).await;
    assert!(
        early.is_err(),
        "wait() returned while a request was still in flight: {early:?}"
    );

    gate.open();
    let resp = within("in-flight request after drain", in_flight)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "released");
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "a keep-alive response after the drain delay carries Connection: close"
    );
    within("gateway to stop", stopped)
        .await
        .unwrap()
        .expect("wait() returns Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_gateway_stops_promptly_after_shutdown() {
    let config = format!(
        "[limits]\ndrain_delay = \"100ms\"\n{}",
        static_route_toml("/ping", "respond = { status = 200, body = \"pong\" }")
    );
    let gw = TestGateway::start(&config).await;
    assert_eq!(gw.get("/ping").await.status, 200);

    gw.shutdown();
    within("idle gateway to stop", gw.wait())
        .await
        .expect("wait() returns Ok");
}
