//! Soundness of the proxy path (SPEC §8.5, §8.6, §8.10, §8.13): no request is sent twice once
//! its head went out, a client body that breaks its framing gets 400 and never reaches the
//! upstream complete, HEAD responses carry no body, and a refusal never leaves a keep-alive
//! connection about to close silently.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::support::auth::{CHALLENGE, Layout};
use crate::support::client::{connect_tls, tls_config};
use crate::support::raw::{RawResponse, parse, read_until_closed};
use crate::support::{
    Resp, TestGateway, Upstream, channel_body, empty, full, route_toml, upstream_toml, within,
};

// === §8.5: no replay ===

/// An upstream that accepts, reads one request head, counts it and hangs up without answering.
struct HangUp {
    addr: SocketAddr,
    heads: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HangUp {
    async fn start() -> HangUp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(AtomicUsize::new(0));
        let counted = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    // Counted before the close, so the gateway's answer comes after the count.
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                drop(stream);
            }
        });
        HangUp { addr, heads, task }
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway whose `api-service` has `targets` in this order behind the public route `/api`.
/// A fresh gateway's first request goes to the first target.
async fn gateway_with_targets(targets: &[SocketAddr]) -> TestGateway {
    let config = format!(
        "{}{}",
        upstream_toml(
            "api-service",
            targets,
            "connect_timeout = \"2s\"\nfail_cooldown = \"10s\""
        ),
        route_toml("/api", "api-service", "")
    );
    TestGateway::start(&config).await
}

/// `method` without a body reaches a target that hangs up after the head: 502, and the healthy
/// second target never sees it.
async fn assert_not_replayed(method: Method) {
    let hang_up = HangUp::start().await;
    let healthy = Upstream::text("healthy").await;
    let gw = gateway_with_targets(&[hang_up.addr, healthy.addr]).await;

    let resp = gw
        .client()
        .send(
            Request::builder()
                .method(method.clone())
                .uri("/api/items/7")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.error(502), "upstream api-service unavailable");
    assert_eq!(hang_up.heads(), 1, "the first target got the {method} head");
    assert_eq!(
        healthy.count(),
        0,
        "a {method} whose head was written is never sent to another target: {:?}",
        healthy.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_that_reached_a_target_is_never_sent_to_another() {
    assert_not_replayed(Method::DELETE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodyless_post_that_reached_a_target_is_never_sent_to_another() {
    assert_not_replayed(Method::POST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_to_a_refusing_target_is_retried_on_the_next_with_its_body() {
    let healthy = Upstream::echo().await;
    let gw = gateway_with_targets(&[Upstream::refusing(), healthy.addr]).await;

    let resp = gw
        .client()
        .send(Request::post("/api/orders").body(full("order-42")).unwrap())
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let got = healthy.single_request();
    assert_eq!(got.method, Method::POST);
    assert_eq!(
        got.body, "order-42",
        "the unsent body went to the next target"
    );
}

// === §8.6: malformed bodies ===

/// An upstream that reports, per request, whether it read a complete body.
async fn body_reporter() -> (Upstream, mpsc::UnboundedReceiver<Result<Bytes, String>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let up = Upstream::spawn_raw(move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let outcome = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| e.to_string());
            let _ = tx.send(outcome);
            http::Response::new(full("complete"))
        }
    })
    .await;
    (up, rx)
}

/// Writes `head_and_start` (a request head and a valid first part of its body), waits until the
/// upstream has the head, then writes `tail` — the part that breaks the framing — or, with `None`,
/// half-closes (the client ends the stream early).
async fn malformed_body_gets_400(head_and_start: &str, tail: Option<&str>) {
    let (up, mut outcomes) = body_reporter().await;
    let config = format!(
        "{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        route_toml("/api", "api-service", "")
    );
    let gw = TestGateway::start(&config).await;

    let mut tls = gw.raw_tls().await;
    let head_and_start = head_and_start.replace("PORT", &gw.https.port().to_string());
    within("writing the head", tls.write_all(head_and_start.as_bytes()))
        .await
        .unwrap();
    tls.flush().await.unwrap();
    up.wait_for_requests(1).await;
    match tail {
        Some(tail) => {
            within("writing the bad tail", tls.write_all(tail.as_bytes()))
                .await
                .unwrap();
            tls.flush().await.unwrap();
        }
        None => within("half-closing", tls.shutdown()).await.unwrap(),
    }
    let (bytes, closed) = read_until_closed(&mut tls).await;
    let raw = parse(bytes, closed);

    let shape = tail.unwrap_or("<EOF>");
    assert_eq!(raw.error(400), "malformed request body", "shape {shape:?}");
    assert!(raw.closed, "the connection is closed after {shape:?}");
    assert_eq!(raw.response_count(), 1, "shape {shape:?}");
    let outcome = within("the upstream's view of the body", outcomes.recv())
        .await
        .expect("upstream reported");
    assert!(
        outcome.is_err(),
        "the upstream must never see a complete body for {shape:?}: got {outcome:?}"
    );
}

const CHUNKED_HEAD: &str = "POST /api/upload HTTP/1.1\r\nHost: localhost:PORT\r\n\
    Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_size_with_a_hex_prefix_gets_400() {
    malformed_body_gets_400(CHUNKED_HEAD, Some("0x5\r\nworld\r\n0\r\n\r\n")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_chunk_size_gets_400() {
    malformed_body_gets_400(CHUNKED_HEAD, Some("-5\r\nworld\r\n0\r\n\r\n")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_size_overflowing_64_bits_gets_400() {
    malformed_body_gets_400(
        CHUNKED_HEAD,
        Some("10000000000000005\r\nworld\r\n0\r\n\r\n"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_data_without_its_crlf_gets_400() {
    malformed_body_gets_400(CHUNKED_HEAD, Some("5\r\nworldXX0\r\n\r\n")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_bytes_than_content_length_gets_400() {
    malformed_body_gets_400(
        "POST /api/upload HTTP/1.1\r\nHost: localhost:PORT\r\nContent-Length: 10\r\n\r\nabc",
        None,
    )
    .await;
}

// === §8.10: HEAD ===

/// A gateway with a token-protected route `/private` and nothing at `/nothing`.
async fn protected_gateway(up: &Upstream) -> TestGateway {
    let layout = Layout::new();
    layout.mint("someone", &["admin"]);
    let config = format!(
        "[auth]\ntokens = \"tokens.toml\"\n{}\n[[routes]]\npath = \"/private\"\n\
         upstream = \"api-service\"\nauth = [\"token\"]\n",
        upstream_toml("api-service", &[up.addr], "")
    );
    layout.start(&config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gets_no_error_body_over_http1() {
    let up = Upstream::text("never").await;
    let gw = protected_gateway(&up).await;

    for (path, status) in [("/private/x", 401), ("/nothing", 404)] {
        let get = gw.raw_get(path).await;
        assert_eq!(get.status, status);
        let request = format!(
            "HEAD {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            gw.https.port()
        );
        let head = gw.raw_exchange(request.as_bytes()).await;
        assert_eq!(head.status, status, "HEAD {path}");
        let head_end = head
            .bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap()
            + 4;
        assert_eq!(
            &head.bytes[head_end..],
            b"",
            "HEAD {path}: nothing after the head"
        );
        if let Some(length) = head.header("content-length") {
            assert_eq!(
                length,
                get.body.len().to_string(),
                "HEAD {path}: Content-Length is the GET's"
            );
        }
        if status == 401 {
            assert_eq!(head.header("www-authenticate"), Some(CHALLENGE));
        }
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gets_no_error_body_over_http2() {
    let up = Upstream::text("never").await;
    let gw = protected_gateway(&up).await;

    for (path, status) in [("/private/x", 401), ("/nothing", 404)] {
        let get = gw.h2_client().get(path).await;
        assert_eq!(get.status, status);
        // The h2 client fails the stream (PROTOCOL_ERROR) if a HEAD response carries DATA.
        let response = gw
            .h2_client()
            .send_streaming(Request::head(path).body(empty()).unwrap())
            .await;
        assert_eq!(response.status(), status, "HEAD {path}");
        assert_eq!(response.version(), Version::HTTP_2);
        let (parts, body) = response.into_parts();
        let body = within("HEAD body", body.collect())
            .await
            .unwrap_or_else(|e| panic!("HEAD {path} over h2 failed: {e:?}"))
            .to_bytes();
        assert!(body.is_empty(), "HEAD {path}: body {body:?}");
        if let Some(length) = parts.headers.get("content-length") {
            assert_eq!(
                length.to_str().unwrap(),
                get.body.len().to_string(),
                "HEAD {path}: Content-Length is the GET's"
            );
        }
    }
    assert_eq!(up.count(), 0);
}

// === §8.13: refusals keep the connection usable ===

/// Reads exactly one response (head plus a `Content-Length` body) from a kept-alive connection.
async fn read_one_response<S: AsyncRead + Unpin>(stream: &mut S) -> RawResponse {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let parsed = parse(bytes[..end + 4].to_vec(), false);
            let length: usize = parsed
                .header("content-length")
                .map_or(0, |l| l.parse().unwrap());
            if bytes.len() >= end + 4 + length {
                return parse(bytes, false);
            }
        }
        let n = within("a response", stream.read(&mut buf)).await.unwrap();
        assert!(
            n > 0,
            "connection closed before a whole response; got {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// Writes `first`, then `later` (the rest of the body) after a pause, as a client whose body
/// trickles in; the pause is not synchronisation: the gateway must behave whatever it is.
async fn write_in_two_parts<S: AsyncWrite + Unpin>(stream: &mut S, first: &[u8], later: &[u8]) {
    within("writing", stream.write_all(first)).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    within("writing", stream.write_all(later)).await.unwrap();
    stream.flush().await.unwrap();
}

/// A refusal with a small body (`Content-Length` or chunked) keeps the connection, and the next
/// request on it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_with_a_small_body_keeps_the_connection_for_the_next_request() {
    let up = Upstream::text("public").await;
    let gw = protected_gateway(&up).await;
    let port = gw.https.port();
    let body = vec![b'x'; 10 * 1024];
    let chunked = {
        let mut c = format!("{:x}\r\n", body.len()).into_bytes();
        c.extend_from_slice(&body);
        c.extend_from_slice(b"\r\n0\r\n\r\n");
        c
    };
    let framings = [
        (format!("Content-Length: {}", body.len()), body.clone()),
        ("Transfer-Encoding: chunked".to_owned(), chunked),
    ];
    for (framing, payload) in framings {
        let mut tls = gw.raw_tls().await;
        for (method, path, status) in [("PATCH", "/private/a", 401), ("POST", "/nothing", 404)] {
            let head =
                format!("{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\n{framing}\r\n\r\n");
            let mut first = head.into_bytes();
            first.extend_from_slice(&payload[..1024]);
            write_in_two_parts(&mut tls, &first, &payload[1024..]).await;
            let refused = read_one_response(&mut tls).await;
            assert_eq!(refused.status, status, "{method} {path} with {framing}");
            assert_eq!(
                refused.header("connection"),
                None,
                "the body was discarded, the connection kept ({framing})"
            );
        }
        let next = format!(
            "GET /private/b HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
        );
        within("writing", tls.write_all(next.as_bytes()))
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let (bytes, closed) = read_until_closed(&mut tls).await;
        let answered = parse(bytes, closed);
        assert_eq!(
            answered.status,
            401,
            "the next request on the connection is answered ({framing}): {:?}",
            String::from_utf8_lossy(&answered.bytes)
        );
    }
    assert_eq!(up.count(), 0);
}

/// A body larger than the discard bound: the refusal says `Connection: close`, and closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_with_a_large_body_announces_the_close() {
    let up = Upstream::text("never").await;
    let gw = protected_gateway(&up).await;
    let port = gw.https.port();

    for framing in [
        "Content-Length: 1048576".to_owned(),
        "Transfer-Encoding: chunked".to_owned(),
    ] {
        let mut tls = gw.raw_tls().await;
        let head =
            format!("POST /private/a HTTP/1.1\r\nHost: localhost:{port}\r\n{framing}\r\n\r\n");
        let mut request = head.into_bytes();
        let chunk = vec![b'y'; 128 * 1024];
        if framing.starts_with("Transfer") {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(&chunk);
            request.extend_from_slice(b"\r\n");
        } else {
            request.extend_from_slice(&chunk);
        }
        // The gateway may stop reading (and close) before all of this is written.
        let _ = within("writing", tls.write_all(&request)).await;
        let _ = tls.flush().await;
        let refused = read_one_response(&mut tls).await;
        assert_eq!(refused.status, 401, "{framing}");
        assert_eq!(
            refused.header("connection"),
            Some("close"),
            "a body past the discard bound gets Connection: close ({framing})"
        );
        let (_, closed) = read_until_closed(&mut tls).await;
        assert!(closed, "and the connection is closed ({framing})");
    }
    assert_eq!(up.count(), 0);
}

/// A client waiting for `100 Continue` is refused with `Connection: close`: its body is never
/// asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_of_an_expect_continue_request_announces_the_close() {
    let up = Upstream::text("never").await;
    let gw = protected_gateway(&up).await;
    let request = format!(
        "PUT /private/a HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: 5\r\n\
         Expect: 100-continue\r\n\r\n",
        gw.https.port()
    );
    let mut tls = gw.raw_tls().await;
    within("writing", tls.write_all(request.as_bytes()))
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let refused = read_one_response(&mut tls).await;
    assert_eq!(refused.status, 401, "no 100 Continue first");
    assert_eq!(refused.header("connection"), Some("close"));
}

/// HTTP/2: a refused stream whose body is still coming is reset on its own; the connection
/// serves the next stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_over_http2_leaves_the_connection_usable() {
    let up = Upstream::text("public").await;
    let gw = protected_gateway(&up).await;
    let authority = format!("localhost:{}", gw.https.port());
    let tls = within(
        "TLS connect",
        connect_tls(
            gw.https,
            "localhost",
            tls_config(&[b"h2"], rustls::ALL_VERSIONS),
        ),
    )
    .await
    .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    let (tx, body) = channel_body();
    tx.send(Bytes::from(vec![b'x'; 1024])).await.unwrap();
    let refused = within(
        "h2 refusal",
        sender.send_request(
            Request::post(format!("https://{authority}/private/a"))
                .body(body)
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 401);
    let refused = Resp::collect(refused).await;
    assert_eq!(refused.error(401), "missing credentials");
    drop(tx);

    within("h2 sender ready", sender.ready()).await.unwrap();
    let next = within(
        "h2 next stream",
        sender.send_request(
            Request::get(format!("https://{authority}/nothing"))
                .body(empty())
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(next.status(), 404);
}
