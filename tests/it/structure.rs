//! Corners issue 10 touched, seen from outside: the streaming request body limit at its edges
//! (a zero limit; one byte over a small one), which is why it stays hand-written rather than
//! http-body-util's `Limited` (that one fails the first, see `http/body.rs`), and the
//! `Upstream::refusing()` helper, which must really refuse and keep its port.

use std::io::ErrorKind;

use crate::support::raw::RawResponse;
use crate::support::{TestGateway, Upstream, full, route_toml, upstream_toml, within};

async fn gateway_with_body_limit(limit: &str) -> (TestGateway, Upstream) {
    let up =
        Upstream::spawn(|req| http::Response::new(full(format!("got {}", req.body.len())))).await;
    let config = format!(
        "[limits]\nmax_body_bytes = {limit}\n{}{}",
        upstream_toml("api-service", &[up.addr], ""),
        route_toml("/api", "api-service", "")
    );
    (TestGateway::start(&config).await, up)
}

async fn chunked_post(gw: &TestGateway, chunks: &[&str]) -> RawResponse {
    let mut request = format!(
        "POST /api/upload HTTP/1.1\r\nHost: localhost:{}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        gw.https.port()
    );
    for chunk in chunks {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    gw.raw_exchange(request.as_bytes()).await
}

/// `max_body_bytes = 0`: any byte of a chunked body is too many, and the upstream never gets it
/// as a complete (empty) request, as it would if the body's size hint said "exactly 0".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_body_limit_refuses_a_chunked_body_with_data() {
    let (gw, up) = gateway_with_body_limit("0").await;

    let raw = chunked_post(&gw, &["x"]).await;
    assert_eq!(raw.error(413), "request body too large");
    // The head may reach the upstream before the first byte fails the body; the request is then
    // aborted, and the upstream records it without a body.
    assert!(
        up.requests().iter().all(|r| r.body.is_empty()),
        "the upstream saw a body past the limit"
    );

    let empty = chunked_post(&gw, &[]).await;
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_eq!(empty.text(), "got 0");
}

/// One byte over a small limit is refused while streaming; at the limit it passes whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_one_byte_over_the_limit_is_refused() {
    let (gw, up) = gateway_with_body_limit("4").await;

    let over = chunked_post(&gw, &["ab", "cde"]).await;
    assert_eq!(over.error(413), "request body too large");
    assert!(
        up.requests().iter().all(|r| r.body.is_empty()),
        "an aborted request carries no body upstream"
    );

    let at = chunked_post(&gw, &["ab", "cd"]).await;
    assert_eq!(at.status, 200, "{at:?}");
    assert_eq!(at.text(), "got 4");
    let complete: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| !r.body.is_empty())
        .collect();
    assert_eq!(
        complete.len(),
        1,
        "only the request at the limit arrived whole"
    );
    assert_eq!(complete[0].body, "abcd");
}

/// The address `refusing()` hands out answers a connect with a refusal, and stays taken: a
/// listener cannot bind it, even with `SO_REUSEADDR` (which tokio's `TcpListener::bind` sets).
#[tokio::test]
async fn refusing_address_refuses_and_cannot_be_taken() {
    let addr = Upstream::refusing();

    let error = within(
        "connect to the refusing address",
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .expect_err("nothing accepts there");
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}");

    let taken = tokio::net::TcpListener::bind(addr)
        .await
        .expect_err("the port is reserved");
    assert_eq!(taken.kind(), ErrorKind::AddrInUse, "{taken}");
    let taken = std::net::TcpListener::bind(addr).expect_err("the port is reserved");
    assert_eq!(taken.kind(), ErrorKind::AddrInUse, "{taken}");

    // Still refusing afterwards: the failed binds left nothing listening.
    let again = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::ConnectionRefused);
}
