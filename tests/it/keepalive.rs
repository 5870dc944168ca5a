//! Idle HTTP/1 keep-alive connections park (SPEC §8.7; BENCHMARKS.md "Memory"): after 250 ms
//! without an open request, hyper lets go of the connection and its buffers, and the next
//! request on the same socket is served by a new hyper connection. What must hold across a park:
//! the next request, a WebSocket upgrade and the smuggling check work as on a fresh connection;
//! a connection is parked only at a message boundary; `idle_timeout` (not hyper's header timer)
//! ends an idle keep-alive connection, and `header_read_timeout` still ends one that never sends
//! a request.
//!
//! The sleeps in these tests are the scenario (a client that pauses), not synchronisation: each
//! pause is followed by a bounded poll of `gatehouse_parked_connections` where a state must be
//! reached.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::client::{connect_tls, tls_config};
use crate::support::raw::{parse, read_until_closed};
use crate::support::{TestGateway, Upstream, route_toml, static_route_toml, upstream_toml, within};

const PING: &[u8] = b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// A gateway with `[limits]` lines `limits`, a static `/ping`, `/echo` in front of an echo
/// upstream and `/ws` in front of a WebSocket echo upstream.
async fn gateway(limits: &str) -> (TestGateway, Upstream, Upstream) {
    let echo = Upstream::echo().await;
    let ws = Upstream::websocket_echo().await;
    let config = format!(
        "[limits]\n{limits}\n{}{}{}{}{}",
        static_route_toml("/ping", "respond = { status = 200, body = \"pong\" }"),
        upstream_toml("echo", &[echo.addr], ""),
        route_toml("/echo", "echo", ""),
        upstream_toml("ws", &[ws.addr], ""),
        route_toml("/ws", "ws", "websocket = true"),
    );
    (TestGateway::start(&config).await, echo, ws)
}

/// Reads one response (head and a `Content-Length` body) without waiting for the connection to
/// close; returns its text.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let parsed = parse(bytes.clone(), false);
            let length = parsed
                .header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
            other => panic!(
                "no complete response ({other:?}); got {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    within("write", stream.write_all(bytes)).await.unwrap();
    within("flush", stream.flush()).await.unwrap();
}

/// A WebSocket client on `tls` (a raw TLS connection to `gw`), after its handshake on `/ws`.
async fn websocket<S>(gw: &TestGateway, tls: S) -> tokio_tungstenite::WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!("wss://localhost:{}/ws", gw.https.port())
        .into_client_request()
        .unwrap();
    let (ws, _) = within(
        "WebSocket handshake",
        tokio_tungstenite::client_async(request, tls),
    )
    .await
    .unwrap();
    ws
}

/// `gatehouse_parked_connections` from the admin listener.
async fn parked(gw: &TestGateway) -> i64 {
    let metrics = gw.admin_get("/metrics").await.text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("gatehouse_parked_connections "))
        .and_then(|value| value.trim().parse().ok())
        .expect("gatehouse_parked_connections in /metrics")
}

/// Polls the gauge until it reads `want` (bounded).
async fn wait_parked(gw: &TestGateway, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = parked(gw).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gatehouse_parked_connections stayed {now}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_serves_its_next_request() {
    let (gw, _echo, _ws) = gateway("idle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    for round in 0..3 {
        send(&mut tls, PING).await;
        let text = read_response(&mut tls).await;
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text}");
        assert!(text.ends_with("pong"), "round {round}: {text}");
        wait_parked(&gw, 1).await;
    }
    send(&mut tls, PING).await;
    let text = read_response(&mut tls).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(
        parked(&gw).await,
        0,
        "a connection with a request is not parked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_requests_do_not_park() {
    let (gw, _echo, _ws) = gateway("idle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    for _ in 0..20 {
        send(&mut tls, PING).await;
        let text = read_response(&mut tls).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert_eq!(parked(&gw).await, 0, "parked between back-to-back requests");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_lasts_idle_timeout_not_header_read_timeout() {
    // hyper's header timer used to run while a keep-alive connection idled, so it was closed
    // after header_read_timeout; SPEC §8.7 gives idle connections idle_timeout.
    let (gw, _echo, _ws) = gateway("header_read_timeout = \"300ms\"\nidle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    send(&mut tls, PING).await;
    assert!(read_response(&mut tls).await.starts_with("HTTP/1.1 200"));
    wait_parked(&gw, 1).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    send(&mut tls, PING).await;
    let text = read_response(&mut tls).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_no_refused_head(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_still_closes_after_idle_timeout() {
    let (gw, _echo, _ws) = gateway("idle_timeout = \"600ms\"").await;
    let mut tls = gw.raw_tls().await;
    send(&mut tls, PING).await;
    let started = Instant::now();
    assert!(read_response(&mut tls).await.starts_with("HTTP/1.1 200"));
    let (rest, closed) = read_until_closed(&mut tls).await;
    assert!(closed, "closed after idle_timeout");
    assert!(rest.is_empty(), "nothing after the response: {rest:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "closed after {waited:?} for idle_timeout 600ms"
    );
    wait_parked(&gw, 0).await;
    assert_no_refused_head(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_request_closes_after_header_read_timeout() {
    let (gw, _echo, _ws) = gateway("header_read_timeout = \"300ms\"\nidle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    let started = Instant::now();
    let (bytes, closed) = read_until_closed(&mut tls).await;
    assert!(closed && bytes.is_empty(), "{bytes:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    assert_no_refused_head(&gw).await;
}

/// No request head was counted as refused or cut off (`method="OTHER"`): a connection that
/// closes idle, before its first request or between two, sent no head at all.
async fn assert_no_refused_head(gw: &TestGateway) {
    let metrics = gw.admin_get("/metrics").await.text();
    assert!(
        !metrics.contains("method=\"OTHER\""),
        "an idle close counted as a request: {metrics}"
    );
}

/// The slowloris shape: a head whose bytes keep coming, each long before the idle deadline,
/// but which is not complete within `header_read_timeout`, is cut off at that deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_dribbled_byte_by_byte_is_cut_off_at_header_read_timeout() {
    let (gw, _echo, _ws) = gateway("header_read_timeout = \"500ms\"\nidle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    let head = format!(
        "GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(40)
    );
    let started = Instant::now();
    let (sent, answer) = within("the gateway cuts the dribbling head off", async {
        let mut tick = tokio::time::interval(Duration::from_millis(40));
        let mut sink = [0u8; 1024];
        let mut answer = Vec::new();
        for (sent, byte) in head.as_bytes().iter().enumerate() {
            tokio::select! {
                read = tls.read(&mut sink) => match read {
                    Ok(0) | Err(_) => return (sent, answer),
                    Ok(n) => answer.extend_from_slice(&sink[..n]),
                },
                _ = tick.tick() => {
                    if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
                        return (sent, answer);
                    }
                }
            }
        }
        (head.len(), answer)
    })
    .await;
    let waited = started.elapsed();
    assert!(
        sent < head.len(),
        "all {} bytes of the head were accepted over {waited:?}",
        head.len()
    );
    assert!(
        answer.is_empty(),
        "no response to a head never finished: {answer:?}"
    );
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "cut off after {waited:?} for header_read_timeout 500ms"
    );
}

/// A pipelined head that came in part while the request before it was held upstream for longer
/// than `header_read_timeout` is not cut off: its deadline runs only once it is waited for (as
/// hyper's header timer did), and its rest comes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_partial_head_waits_out_a_slow_response_before_its_deadline_runs() {
    let (held, gate) = Upstream::held().await;
    let config = format!(
        "[limits]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"10s\"\n{}{}{}",
        static_route_toml("/ping", "respond = { status = 200, body = \"pong\" }"),
        upstream_toml("held", &[held.addr], ""),
        route_toml("/held", "held", ""),
    );
    let gw = TestGateway::start(&config).await;
    let mut tls = gw.raw_tls().await;
    send(
        &mut tls,
        b"GET /held HTTP/1.1\r\nHost: localhost\r\n\r\nGET /ping HTTP/1.1\r\nHo",
    )
    .await;
    within(
        "the first request reaches the upstream",
        held.wait_for_requests(1),
    )
    .await;
    // The scenario, not synchronisation: an upstream slower than header_read_timeout.
    tokio::time::sleep(Duration::from_millis(700)).await;
    gate.open();
    let first = read_response(&mut tls).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    send(&mut tls, b"st: localhost\r\n\r\n").await;
    let second = read_response(&mut tls).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.ends_with("pong"), "{second}");
}

/// The head deadline lasts while a head is waited for and no longer: a head in two reads within
/// the limit is served, a pause longer than the limit after it (the connection parks) does not
/// end the connection, and the next split head gets a deadline of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_in_two_reads_is_served_and_its_deadline_ends_with_it() {
    let (gw, _echo, _ws) = gateway("header_read_timeout = \"500ms\"\nidle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    let (first, second) = PING.split_at(12);
    send(&mut tls, first).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut tls, second).await;
    let text = read_response(&mut tls).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    // The next head in two reads too: it gets a deadline of its own, not the last one's.
    send(&mut tls, first).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut tls, second).await;
    let text = read_response(&mut tls).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_came_in_its_own_read_is_never_mistaken_for_a_request() {
    // The body comes 400 ms after its head, past header_read_timeout: a body is not a head, and
    // the head deadline must not cut it off.
    let (gw, echo, _ws) = gateway("header_read_timeout = \"300ms\"\nidle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    send(
        &mut tls,
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\n",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    send(&mut tls, b"hello world").await;
    let text = read_response(&mut tls).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let seen = echo.single_request();
    assert_eq!(seen.body, &b"hello world"[..]);
    // No park at a point hyper may hold part of a request; the connection still serves.
    tokio::time::sleep(Duration::from_millis(400)).await;
    send(&mut tls, PING).await;
    let text = read_response(&mut tls).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(echo.count(), 1, "the upstream saw one request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_partial_request_is_not_parked_and_never_misread() {
    let (gw, echo, _ws) = gateway("idle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    send(
        &mut tls,
        b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /ec",
    )
    .await;
    let first = read_response(&mut tls).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    send(
        &mut tls,
        b"ho HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    // Either the connection kept the partial head and serves it, or it was closed: never a
    // second request made of the tail alone.
    let (rest, _closed) = read_until_closed(&mut tls).await;
    let rest = String::from_utf8_lossy(&rest).into_owned();
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 200"),
        "after the pause: {rest:?}"
    );
    assert!(
        echo.requests().iter().all(|r| r.body == b"hi"[..]),
        "the upstream saw only whole requests"
    );
    assert_eq!(parked(&gw).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_is_still_refused_after_a_park() {
    let (gw, echo, _ws) = gateway("idle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    send(&mut tls, PING).await;
    assert!(read_response(&mut tls).await.starts_with("HTTP/1.1 200"));
    wait_parked(&gw, 1).await;
    let smuggle = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\
                    Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    send(&mut tls, smuggle).await;
    let (bytes, closed) = read_until_closed(&mut tls).await;
    let response = parse(bytes, closed);
    assert_eq!(response.status, 400, "{:?}", response.text());
    assert!(
        response.closed,
        "the connection is closed after the refusal"
    );
    assert_eq!(
        echo.count(),
        0,
        "the upstream never saw the smuggling request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_works_on_a_parked_connection() {
    let (gw, _echo, _ws) = gateway("idle_timeout = \"10s\"").await;
    let mut tls = gw.raw_tls().await;
    send(&mut tls, PING).await;
    assert!(read_response(&mut tls).await.starts_with("HTTP/1.1 200"));
    wait_parked(&gw, 1).await;
    let mut ws = websocket(&gw, tls).await;
    within("send", ws.send(Message::text("after a park")))
        .await
        .unwrap();
    let echoed = within("echo", ws.next()).await.expect("open").unwrap();
    assert_eq!(echoed, Message::text("after a park"));
    assert_eq!(parked(&gw).await, 0, "a tunnel is not parked");
}

/// A WebSocket tunnel's frames are not request heads: a tunnel that pauses longer than
/// `header_read_timeout` between frames (the pause is the scenario) keeps working, whatever
/// bytes its frames carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_tunnel_outlives_header_read_timeout() {
    let (gw, _echo, _ws) = gateway("header_read_timeout = \"300ms\"\nidle_timeout = \"10s\"").await;
    let mut ws = websocket(&gw, gw.raw_tls().await).await;
    // Text that looks like the start of a request head, then a pause past the head deadline.
    for text in ["GET /x HTTP/1.1", "no newline in this one", "last"] {
        within("send", ws.send(Message::text(text))).await.unwrap();
        let echoed = within("echo", ws.next()).await.expect("open").unwrap();
        assert_eq!(echoed, Message::text(text));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_is_closed_by_the_drain() {
    let (gw, _echo, _ws) =
        gateway("idle_timeout = \"30s\"\ndrain_delay = \"0s\"\nshutdown_grace = \"5s\"").await;
    let mut tls = gw.raw_tls().await;
    send(&mut tls, PING).await;
    assert!(read_response(&mut tls).await.starts_with("HTTP/1.1 200"));
    wait_parked(&gw, 1).await;
    let started = Instant::now();
    gw.shutdown();
    let (rest, closed) = read_until_closed(&mut tls).await;
    assert!(closed && rest.is_empty(), "{rest:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_alpn_is_still_served() {
    let (gw, _echo, _ws) = gateway("idle_timeout = \"10s\"").await;
    let tls = within(
        "TLS without ALPN",
        connect_tls(gw.https, "localhost", tls_config(&[], rustls::ALL_VERSIONS)),
    )
    .await
    .unwrap();
    let (mut sender, conn) = within(
        "h2 handshake",
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        ),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(format!("https://localhost:{}/ping", gw.https.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = within("h2 request", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
}
