//! Request limits (SPEC §2 `[limits]`, §4): body size (413, by Content-Length and while
//! streaming), header size (431), request-smuggling shapes (400), the slowloris guard.

use bytes::Bytes;
use http::Request;
use tokio::io::AsyncWriteExt;

use crate::support::raw::{parse, read_until_closed};
use crate::support::{
    TestGateway, Upstream, channel_body, full, route_toml, upstream_toml, within,
};

const LIMITS: &str = "[limits]\nmax_body_bytes = 1024\nmax_header_bytes = \"8KiB\"\n";

async fn limited_gateway(extra_limits: &str) -> (TestGateway, Upstream) {
    let up =
        Upstream::spawn(|req| http::Response::new(full(format!("got {}", req.body.len())))).await;
    let config = format!(
        "{LIMITS}{extra_limits}\n{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        route_toml("/api", "api-service", "")
    );
    (TestGateway::start(&config).await, up)
}

fn chunked_post(port: u16, chunks: &[usize]) -> Vec<u8> {
    let mut request = format!(
        "POST /api/upload HTTP/1.1\r\nHost: localhost:{port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for &size in chunks {
        request.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        request.extend(std::iter::repeat_n(b'x', size));
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_limit_by_content_length_gets_413() {
    let (gw, up) = limited_gateway("").await;

    for client in [gw.client(), gw.h2_client()] {
        let resp = client
            .send(
                Request::post("/api/upload")
                    .body(full(vec![b'x'; 2048]))
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.error(413), "request body too large");
    }
    assert_eq!(
        up.count(),
        0,
        "a declared oversize body is refused before the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_at_the_limit_passes() {
    let (gw, up) = limited_gateway("").await;

    let resp = gw
        .client()
        .send(
            Request::post("/api/upload")
                .body(full(vec![b'x'; 1024]))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "got 1024");

    let raw = gw
        .raw_exchange(&chunked_post(gw.https.port(), &[512, 512]))
        .await;
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(raw.text(), "got 1024");
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_limit_gets_413_while_streaming() {
    let (gw, _up) = limited_gateway("").await;

    let raw = gw
        .raw_exchange(&chunked_post(gw.https.port(), &[512, 512, 512]))
        .await;
    assert_eq!(raw.error(413), "request body too large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streamed_body_over_limit_gets_413() {
    let (gw, _up) = limited_gateway("").await;
    let client = gw.h2_client();
    let (tx, body) = channel_body();
    let response = tokio::spawn(async move {
        client
            .send(Request::post("/api/upload").body(body).unwrap())
            .await
    });
    for _ in 0..3 {
        // The gateway may answer and reset the stream before the last chunk; that is fine.
        let _ = tx.send(Bytes::from(vec![b'y'; 512])).await;
    }
    drop(tx);
    let resp = within("h2 413 response", response).await.unwrap();
    assert_eq!(resp.error(413), "request body too large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let (gw, up) = limited_gateway("").await;

    let resp = gw
        .client()
        .send(
            Request::get("/api/x")
                .header("x-big", "b".repeat(12 * 1024))
                .body(crate::support::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.error(431), "request header fields too large");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_under_the_limit_pass() {
    let (gw, up) = limited_gateway("").await;

    let resp = gw
        .client()
        .send(
            Request::get("/api/x")
                .header("x-big", "b".repeat(4 * 1024))
                .body(crate::support::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        up.single_request().header("x-big").map(str::len),
        Some(4096)
    );
}

/// Sends a smuggling-shaped request and checks: 400 (with the gateway's JSON `message` when
/// given; shapes hyper's parser refuses itself get hyper's empty 400), connection closed,
/// nothing reached the upstream (neither the request nor anything hidden in its body).
async fn assert_rejected_400(request: String, message: Option<&str>) {
    let (gw, up) = limited_gateway("").await;
    let raw = gw.raw_exchange(request.as_bytes()).await;
    assert_eq!(raw.status, 400, "{:?}", String::from_utf8_lossy(&raw.bytes));
    if let Some(message) = message {
        assert_eq!(raw.error(400), message);
    }
    assert_eq!(
        raw.response_count(),
        1,
        "{:?}",
        String::from_utf8_lossy(&raw.bytes)
    );
    assert!(
        raw.closed,
        "the gateway must close the connection after a framing error"
    );
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_gets_400() {
    assert_rejected_400(
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
            .to_owned(),
        Some("bad request: both Content-Length and Transfer-Encoding"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_duplicate_content_length_gets_400() {
    assert_rejected_400(
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
            .to_owned(),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_duplicate_content_length_gets_400() {
    assert_rejected_400(
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
            .to_owned(),
        Some("bad request: duplicate Content-Length"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obsolete_line_folding_gets_400() {
    assert_rejected_400(
        "GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n  b\r\nConnection: close\r\n\r\n"
            .to_owned(),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_head_is_cut_off_by_header_read_timeout() {
    let (gw, up) = limited_gateway("header_read_timeout = \"300ms\"\n").await;
    let mut tls = gw.raw_tls().await;

    within(
        "writing a partial head",
        tls.write_all(b"GET /api/x HTTP/1.1\r\nHost: localhost\r\n"),
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    let (bytes, closed) = read_until_closed(&mut tls).await;
    assert!(
        closed,
        "a connection that never finishes its head must be closed"
    );
    if !bytes.is_empty() {
        assert_eq!(parse(bytes, closed).status, 408);
    }
    assert_eq!(up.count(), 0);
    // Counted (and logged) as NGINX counts a `client_header_timeout`: a 408 with nothing of the
    // partial head trusted, method `OTHER`.
    let counted = "gatehouse_requests_total{route=\"none\",method=\"OTHER\",status=\"408\"} 1";
    let metrics = gw.admin_get("/metrics").await.text();
    assert!(metrics.lines().any(|l| l == counted), "{metrics}");
}
