//! Proxying (SPEC §4 "To upstreams gatehouse sends"): forwarded headers for trusted and
//! untrusted peers, `Host`, request ids, hop-by-hop removal, bodies both ways, 502/504 naming
//! the upstream, round robin with passive health, pooled keep-alive.

use http::header::{CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode, Version};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::support::{
    TestGateway, Upstream, empty, full, is_valid_request_id, route_toml, static_route_toml,
    upstream_toml,
};

/// One upstream `api-service` behind `/api`, with extra `[server]` keys and upstream keys.
async fn gateway_for(
    up_addr: std::net::SocketAddr,
    server_extra: &str,
    upstream_extra: &str,
) -> TestGateway {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server_extra}\n{}{}",
        upstream_toml("api-service", &[up_addr], upstream_extra),
        route_toml("/api", "api-service", "")
    );
    TestGateway::start(&config).await
}

fn xff_entries(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peer_gets_forwarded_headers_reset_to_the_peer() {
    let up = Upstream::echo().await;
    let gw = gateway_for(up.addr, "", "").await;

    let resp = gw
        .client()
        .send(
            Request::get("/api/x?q=1")
                .header("x-forwarded-for", "203.0.113.7")
                .header("x-real-ip", "203.0.113.8")
                .header("x-forwarded-proto", "http")
                .header("x-forwarded-host", "evil.example")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);

    let got = up.single_request();
    let authority = format!("localhost:{}", gw.https.port());
    assert_eq!(got.uri, "/api/x?q=1");
    assert_eq!(
        got.header("host"),
        Some(authority.as_str()),
        "Host as received"
    );
    assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(got.header_all("x-forwarded-proto"), ["https"]);
    assert_eq!(got.header_all("x-forwarded-host"), [authority.as_str()]);
}

/// Requests without a body go over the lean exchange and requests with one through hyper's
/// client; the gateway's headers must replace the client's the same way on both, over h1 and h2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_replace_forged_ones_with_and_without_a_body() {
    let up = Upstream::echo().await;
    let gw = gateway_for(up.addr, "", "").await;
    for client in [gw.client(), gw.h2_client()] {
        for body in [None, Some("payload")] {
            let forged = Request::post("/api/x")
                .header("x-forwarded-for", "203.0.113.7")
                .header("x-real-ip", "203.0.113.8")
                .header("x-forwarded-proto", "http")
                .header("x-forwarded-host", "evil.example")
                .header("x-request-id", "bad id with spaces");
            let resp = client
                .send(forged.body(body.map_or_else(empty, full)).unwrap())
                .await;
            assert_eq!(resp.status, 200);
        }
    }
    let authority = format!("localhost:{}", gw.https.port());
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    for got in &seen {
        assert_eq!(got.header_all("x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(got.header_all("x-real-ip"), ["127.0.0.1"]);
        assert_eq!(got.header_all("x-forwarded-proto"), ["https"]);
        assert_eq!(got.header_all("x-forwarded-host"), [authority.as_str()]);
        let ids = got.header_all("x-request-id");
        assert!(ids.len() == 1 && is_valid_request_id(ids[0]), "{ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_peer_gets_its_address_appended() {
    let up = Upstream::echo().await;
    let gw = gateway_for(up.addr, "trusted_proxies = [\"127.0.0.1/32\"]", "").await;

    let resp = gw
        .client()
        .send(
            Request::get("/api/x")
                .header("x-forwarded-for", "203.0.113.7")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);

    let got = up.single_request();
    let xff = got.header_all("x-forwarded-for").join(",");
    assert_eq!(xff_entries(&xff), ["203.0.113.7", "127.0.0.1"]);
    assert_eq!(
        got.header_all("x-real-ip"),
        ["203.0.113.7"],
        "client IP = right-most untrusted X-Forwarded-For entry"
    );
    assert_eq!(got.header_all("x-forwarded-proto"), ["https"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_chain_skips_trusted_entries_for_client_ip() {
    let up = Upstream::echo().await;
    let gw = gateway_for(
        up.addr,
        "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]",
        "",
    )
    .await;

    let resp = gw
        .client()
        .send(
            Request::get("/api/x")
                .header("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.1.2.3")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);

    let got = up.single_request();
    let xff = got.header_all("x-forwarded-for").join(",");
    assert_eq!(
        xff_entries(&xff),
        ["198.51.100.1", "203.0.113.7", "10.1.2.3", "127.0.0.1"]
    );
    assert_eq!(got.header_all("x-real-ip"), ["203.0.113.7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_request_id_is_kept_and_echoed() {
    let up = Upstream::echo().await;
    let gw = gateway_for(up.addr, "", "").await;
    let id = "abc-123.x:y_Z";

    let resp = gw
        .client()
        .send(
            Request::get("/api/x")
                .header("x-request-id", id)
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-request-id"), Some(id));
    assert_eq!(up.single_request().header_all("x-request-id"), [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_request_id_is_replaced_by_a_generated_one() {
    let up = Upstream::echo().await;
    let gw = gateway_for(up.addr, "", "").await;
    let too_long = "a".repeat(129);

    for bad in ["has space", "semi;colon", "quote\"", too_long.as_str()] {
        let resp = gw
            .client()
            .send(
                Request::get("/api/x")
                    .header("x-request-id", bad)
                    .body(empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status, 200, "{bad:?}");
        let echoed = resp.header("x-request-id").expect("x-request-id echoed");
        assert_ne!(echoed, bad);
        assert!(is_valid_request_id(echoed), "generated id {echoed:?}");
        let got = up.requests().pop().unwrap();
        assert_eq!(
            got.header_all("x-request-id"),
            [echoed],
            "upstream gets the same id"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_gets_a_request_id() {
    let up = Upstream::echo().await;
    let gw = gateway_for(up.addr, "", "").await;

    let ok = gw.get("/api/x").await;
    let ok_id = ok
        .header("x-request-id")
        .expect("proxied response has x-request-id");
    assert!(is_valid_request_id(ok_id));
    assert_eq!(up.single_request().header("x-request-id"), Some(ok_id));

    let not_found = gw.get("/missing").await;
    assert_eq!(not_found.error(404), "no route for /missing");
    let h2 = gw.h2_client().get("/api/y").await;
    assert!(h2.header("x-request-id").is_some_and(is_valid_request_id));
    assert_ne!(
        h2.header("x-request-id"),
        Some(ok_id),
        "ids are per request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let up = Upstream::spawn(|_| {
        Response::builder()
            .header(CONNECTION, "x-resp-hop")
            .header("x-resp-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept")
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let gw = gateway_for(up.addr, "", "").await;

    let resp = gw
        .client()
        .send(
            Request::get("/api/x")
                .header(CONNECTION, "keep-alive, x-custom-hop")
                .header("x-custom-hop", "1")
                .header("keep-alive", "timeout=5")
                .header("proxy-connection", "keep-alive")
                .header("te", "gzip")
                .header("x-end-to-end", "kept")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-end-to-end"), Some("kept"));
    for name in ["x-resp-hop", "keep-alive"] {
        assert!(
            resp.header(name).is_none(),
            "response kept hop-by-hop {name}"
        );
    }
    assert!(
        resp.header("connection")
            .is_none_or(|c| !c.contains("x-resp-hop")),
        "response Connection: {:?}",
        resp.header("connection")
    );

    let got = up.single_request();
    assert_eq!(got.header("x-end-to-end"), Some("kept"));
    for name in [
        "x-custom-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(got.header(name).is_none(), "upstream got hop-by-hop {name}");
    }
    assert!(
        got.header("connection")
            .is_none_or(|c| !c.contains("x-custom-hop")),
        "upstream Connection: {:?}",
        got.header("connection")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_bodies_pass_through_intact() {
    let up = Upstream::spawn(|req| {
        Response::builder()
            .status(StatusCode::CREATED)
            .header("x-upstream", "yes")
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(full(req.body.clone()))
            .unwrap()
    })
    .await;
    let gw = gateway_for(up.addr, "", "").await;
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();

    for client in [gw.client(), gw.h2_client()] {
        let resp = client
            .send(
                Request::post("/api/upload")
                    .body(full(payload.clone()))
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header("x-upstream"), Some("yes"));
        assert_eq!(resp.body.len(), payload.len());
        assert!(resp.body == payload, "response body differs");
    }
    for got in up.requests() {
        assert_eq!(got.method, "POST");
        assert_eq!(got.version, Version::HTTP_11, "upstreams get HTTP/1.1");
        assert!(got.body == payload, "upstream body differs");
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_401_body_passes_through_untouched() {
    let up = Upstream::spawn(|_| {
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(CONTENT_TYPE, "application/json")
            .header(WWW_AUTHENTICATE, "Bearer realm=\"upstream\"")
            .body(full("{\"message\":\"denied by upstream\"}"))
            .unwrap()
    })
    .await;
    let gw = gateway_for(up.addr, "", "").await;

    let resp = gw.get("/api/x").await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.text(), "{\"message\":\"denied by upstream\"}");
    assert_eq!(
        resp.header(WWW_AUTHENTICATE.as_str()),
        Some("Bearer realm=\"upstream\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_banner_by_default() {
    let up = Upstream::echo().await;
    let config = format!(
        "{}{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        route_toml("/api", "api-service", ""),
        static_route_toml("/static", "respond = { status = 200, body = \"s\" }")
    );
    let gw = TestGateway::start(&config).await;

    for path in ["/api/x", "/static", "/missing"] {
        let resp = gw.get(path).await;
        assert!(
            resp.header("server").is_none(),
            "{path}: Server: {:?}",
            resp.header("server")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_gets_502_naming_it() {
    let gw = gateway_for(Upstream::refusing(), "", "connect_timeout = \"2s\"").await;

    let resp = gw.get("/api/x").await;
    assert_eq!(resp.error(502), "upstream api-service unavailable");
    let h2 = gw.h2_client().get("/api/x").await;
    assert_eq!(h2.error(502), "upstream api-service unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_without_answer_gets_502() {
    // Accepts, reads the request, closes without a response.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closer = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
        }
    });
    let gw = gateway_for(addr, "", "").await;

    let resp = gw.get("/api/x").await;
    assert_eq!(resp.error(502), "upstream api-service unavailable");
    closer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gets_504_naming_it() {
    let (up, _gate) = Upstream::held().await;
    let gw = gateway_for(up.addr, "", "response_timeout = \"300ms\"").await;

    let resp = gw.get("/api/slow").await;
    assert_eq!(resp.error(504), "upstream api-service timed out");
    assert_eq!(
        up.single_request().uri,
        "/api/slow",
        "the request did reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_skips_a_dead_target_and_every_request_succeeds() {
    let first = Upstream::text("first").await;
    let second = Upstream::text("second").await;
    let dead = Upstream::refusing();
    let config = format!(
        "{}{}",
        upstream_toml(
            "api-service",
            &[first.addr, dead, second.addr],
            "fail_cooldown = \"10s\""
        ),
        route_toml("/api", "api-service", "")
    );
    let gw = TestGateway::start(&config).await;

    for i in 0..12 {
        let resp = gw.get(&format!("/api/{i}")).await;
        assert_eq!(resp.status, 200, "request {i}: {:?}", resp.body);
    }
    assert_eq!(first.count() + second.count(), 12);
    assert!(first.count() >= 3, "first got {}", first.count());
    assert!(second.count() >= 3, "second got {}", second.count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates_between_live_targets() {
    let first = Upstream::text("first").await;
    let second = Upstream::text("second").await;
    let config = format!(
        "{}{}",
        upstream_toml("api-service", &[first.addr, second.addr], ""),
        route_toml("/api", "api-service", "")
    );
    let gw = TestGateway::start(&config).await;

    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(gw.get("/api/x").await.text());
    }
    assert_eq!(first.count(), 3, "answers: {answers:?}");
    assert_eq!(second.count(), 3, "answers: {answers:?}");
    assert!(
        answers.windows(2).all(|w| w[0] != w[1]),
        "round robin alternates: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_reused() {
    let up = Upstream::echo().await;
    let gw = gateway_for(up.addr, "", "max_idle_per_target = 4").await;

    for _ in 0..4 {
        assert_eq!(gw.get("/api/x").await.status, 200);
    }
    let peers: Vec<_> = up.requests().into_iter().map(|r| r.peer).collect();
    assert_eq!(peers.len(), 4);
    assert!(
        peers.iter().all(|p| *p == peers[0]),
        "sequential requests reuse one pooled upstream connection: {peers:?}"
    );
}

/// A raw keep-alive upstream: answers each request on a connection with `ok`, and reports each
/// connection's end (the peer closed it) with how long it had been idle.
async fn keep_alive_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedSender<()>,
    tokio::sync::mpsc::UnboundedReceiver<std::time::Duration>,
) {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let (close_now_tx, mut close_now_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                _ = close_now_rx.recv() => continue,
            };
            let mut last = std::time::Instant::now();
            let mut buf = [0u8; 4096];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => {
                            let _ = closed_tx.send(last.elapsed());
                            break;
                        }
                        Ok(_) => {
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            stream.write_all(answer).await.unwrap();
                            last = std::time::Instant::now();
                        }
                    },
                    // The upstream drops its side of the idle connection.
                    _ = close_now_rx.recv() => break,
                }
            }
        }
    });
    (addr, close_now_tx, closed_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_are_closed_after_pool_idle_timeout() {
    let (addr, _close_now, mut closed) = keep_alive_upstream().await;
    let gw = gateway_for(addr, "", "pool_idle_timeout = \"300ms\"").await;

    assert_eq!(gw.get("/api/x").await.status, 200);
    // No further request comes to notice the expiry: the pool closes it on its own.
    let idle = tokio::time::timeout(std::time::Duration::from_secs(5), closed.recv())
        .await
        .expect("the idle upstream connection is closed within 5 s")
        .unwrap();
    assert!(
        idle >= std::time::Duration::from_millis(300),
        "closed only after pool_idle_timeout, not before: {idle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_is_replaced_without_an_error() {
    let (addr, close_now, mut closed) = keep_alive_upstream().await;
    let gw = gateway_for(addr, "", "").await;

    assert_eq!(gw.get("/api/x").await.status, 200);
    // Whether the gateway notices the close before the next request (the pool drops the
    // connection) or only when it sends on it (hyper hands the unsent request back), the request
    // goes to a new connection.
    close_now.send(()).unwrap();
    for _ in 0..3 {
        let resp = gw.get("/api/x").await;
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        assert_eq!(resp.text(), "ok");
    }
    assert!(
        closed.try_recv().is_err(),
        "no connection was dropped by the gateway meanwhile"
    );
}

/// What the scripted upstream does with the `n`th request it reads (0-based, over all
/// connections).
#[derive(Clone, Copy)]
enum Script {
    /// Answers `ok` at once.
    Ok,
    /// Answers with a chunked body whose two chunks are `gap` apart.
    SlowBody { gap: std::time::Duration },
    /// Closes the connection without answering.
    Hang,
}

/// A raw HTTP/1.1 upstream that follows `script` per request and counts the connections it
/// accepted and the requests it read.
async fn scripted_upstream(
    script: fn(usize) -> Script,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (conns, reqs) = (accepted.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            conns.fetch_add(1, SeqCst);
            let reqs = reqs.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One bodyless request head at a time.
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    let step = script(reqs.fetch_add(1, SeqCst));
                    match step {
                        Script::Ok => {
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            stream.write_all(answer).await.unwrap();
                        }
                        Script::SlowBody { gap } => {
                            let head =
                                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n";
                            stream.write_all(head).await.unwrap();
                            tokio::time::sleep(gap).await;
                            stream.write_all(b"2\r\nok\r\n0\r\n\r\n").await.unwrap();
                        }
                        Script::Hang => return,
                    }
                }
            });
        }
    });
    (addr, accepted, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_lost_on_a_pooled_connection_is_not_sent_again() {
    use std::sync::atomic::Ordering::SeqCst;
    // The second request reaches the upstream on the kept-alive connection, which then closes
    // without an answer: it may have been acted on, so it must not go out a second time.
    let (addr, accepted, requests) =
        scripted_upstream(|n| if n == 1 { Script::Hang } else { Script::Ok }).await;
    let gw = gateway_for(addr, "", "").await;

    assert_eq!(gw.get("/api/x").await.status, 200);
    let resp = gw.get("/api/x").await;
    assert_eq!(resp.error(502), "upstream api-service unavailable");
    assert_eq!(
        requests.load(SeqCst),
        2,
        "the lost request was read once, never replayed"
    );
    assert_eq!(
        accepted.load(SeqCst),
        1,
        "no new connection was opened to replay it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_busy_streaming_longer_than_pool_idle_timeout_is_still_reused() {
    use std::sync::atomic::Ordering::SeqCst;
    let (addr, accepted, _) = scripted_upstream(|n| {
        if n == 0 {
            Script::SlowBody {
                gap: std::time::Duration::from_millis(700),
            }
        } else {
            Script::Ok
        }
    })
    .await;
    let gw = gateway_for(addr, "", "pool_idle_timeout = \"300ms\"").await;

    let first = gw.get("/api/x").await;
    assert_eq!(first.text(), "okok");
    let second = gw.get("/api/x").await;
    assert_eq!(second.text(), "ok");
    assert_eq!(
        accepted.load(SeqCst),
        1,
        "streaming is not idling: the connection is reused right after its long body"
    );
}

/// An HTTPS upstream serving the test CA's `localhost` certificate: answers `tls-ok` and counts
/// the TLS connections it accepted.
async fn https_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let leaf = &crate::support::certs().default;
    let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(crate::support::client::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(full("tls-ok")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// A gateway proxying `/api` to the HTTPS upstream at `port` (as `localhost`), trusting the
/// certificates in `ca_pem`. The returned dir holds the CA file.
async fn https_gateway(port: u16, ca_pem: &str) -> (TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let config = format!(
        "\n[[upstreams]]\nname = \"api-service\"\ntargets = [\"localhost:{port}\"]\nscheme = \"https\"\nca = \"{}\"\n{}",
        ca.display(),
        route_toml("/api", "api-service", "")
    );
    (TestGateway::start(&config).await, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_reached_over_tls_trusting_its_ca_and_kept_alive() {
    let (addr, accepted) = https_upstream().await;
    let (gw, _dir) = https_gateway(addr.port(), &crate::support::certs().ca_pem).await;

    for _ in 0..3 {
        let resp = gw.get("/api/x").await;
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        assert_eq!(resp.text(), "tls-ok");
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one TLS connection, kept alive for all three requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_an_untrusted_certificate_gets_502() {
    let (addr, accepted) = https_upstream().await;
    // Trusting another certificate than the test CA (the system roots may be absent in CI).
    let (gw, _dir) = https_gateway(addr.port(), &crate::support::certs().sni.cert_pem).await;

    let resp = gw.get("/api/x").await;
    assert_eq!(resp.error(502), "upstream api-service unavailable");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_target_given_by_host_name_is_resolved() {
    let up = Upstream::text("by-name").await;
    let config = format!(
        "\n[[upstreams]]\nname = \"api-service\"\ntargets = [\"localhost:{}\"]\n{}",
        up.addr.port(),
        route_toml("/api", "api-service", "")
    );
    let gw = TestGateway::start(&config).await;

    let resp = gw.get("/api/x").await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(resp.text(), "by-name");
}
