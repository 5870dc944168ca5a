//! What the gateway makes of the bytes an HTTP/1.1 upstream sends back (SPEC §4 "upstreams get
//! pooled HTTP/1.1 keep-alive", the 502/504 rows of §4, §8.5, §8.10): every body framing
//! (Content-Length, chunked with extensions and trailers, close-delimited, HTTP/1.0), when an
//! upstream connection is reused and when a new one is opened, bodyless responses (HEAD, 204,
//! 304), interim 1xx responses, and malformed, truncated or oversized responses (502 naming the
//! upstream, never a hang, and the next request still served).
//!
//! The upstream is [`Scripted`]: a raw TCP server that reads each request head, records it with
//! the index of the connection it came on, and writes back exactly the bytes the test chose.
//! Connection indices pin down reuse: a test that expects `[0, 0, 0]` fails if the gateway opens
//! a connection per request, and one that expects `[0, 1]` fails if it reuses a broken one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::support::{Client, Resp, TestGateway, empty, route_toml, upstream_toml};

/// The bound on every wait this module makes itself.
const WAIT: Duration = Duration::from_secs(5);

/// What a broken upstream gets (SPEC §4).
const UNAVAILABLE: &str = "upstream wire unavailable";

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// One request head as the upstream read it.
#[derive(Debug, Clone)]
struct Head {
    /// Index of the accepted connection it came on (0 for the first).
    conn: usize,
    /// Index of the request on that connection (0 for the first).
    seq: usize,
    method: String,
    path: String,
}

/// What the upstream writes for one request, and whether it closes the connection afterwards.
struct Reply {
    bytes: Vec<u8>,
    close: bool,
}

fn keep(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        bytes: bytes.into(),
        close: false,
    }
}

fn close(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        bytes: bytes.into(),
        close: true,
    }
}

/// `200 OK` with a `Content-Length` body.
fn ok(body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let mut bytes =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

type Script = dyn Fn(&Head) -> Reply + Send + Sync;

/// A scripted raw HTTP/1.1 upstream on `127.0.0.1:0`.
struct Scripted {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<Head>>>,
    /// The index of each connection the upstream closed after a `close` reply, in order.
    closed: mpsc::UnboundedReceiver<usize>,
    task: JoinHandle<()>,
}

impl Scripted {
    /// Answers each request with what `script` returns for its head (which carries the
    /// connection index and the request's number on that connection).
    async fn start(script: impl Fn(&Head) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let script: Arc<Script> = Arc::new(script);
        let recorded = heads.clone();
        let task = tokio::spawn(async move {
            // Dropped with the accept loop when the test ends: every connection task stops too.
            let mut connections = JoinSet::new();
            for conn in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let args = (script.clone(), recorded.clone(), closed_tx.clone());
                connections.spawn(serve(stream, conn, args.0, args.1, args.2));
            }
        });
        Scripted {
            addr,
            heads,
            closed,
            task,
        }
    }

    /// Answers every request with `bytes` and keeps the connection open.
    async fn canned(bytes: impl Into<Vec<u8>>) -> Scripted {
        let bytes = bytes.into();
        Scripted::start(move |_| keep(bytes.clone())).await
    }

    fn heads(&self) -> Vec<Head> {
        self.heads.lock().unwrap().clone()
    }

    /// The connection index each request came on, in arrival order.
    fn conns(&self) -> Vec<usize> {
        self.heads().iter().map(|h| h.conn).collect()
    }

    /// Waits until the upstream closed its next connection; returns that connection's index.
    async fn next_closed(&mut self) -> usize {
        bounded("the upstream to close a connection", self.closed.recv())
            .await
            .expect("upstream running")
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One upstream connection: read a head, record it, write the scripted reply, repeat.
async fn serve(
    mut stream: TcpStream,
    conn: usize,
    script: Arc<Script>,
    heads: Arc<Mutex<Vec<Head>>>,
    closed: mpsc::UnboundedSender<usize>,
) {
    let mut buf = Vec::new();
    for seq in 0.. {
        let Some(text) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let mut words = text.split(' ');
        let head = Head {
            conn,
            seq,
            method: words.next().unwrap_or_default().to_owned(),
            path: words.next().unwrap_or_default().to_owned(),
        };
        // Recorded before the reply goes out, so a test that has its response sees the head.
        heads.lock().unwrap().push(head.clone());
        let reply = script(&head);
        if stream.write_all(&reply.bytes).await.is_err() {
            return;
        }
        if reply.close {
            let _ = stream.shutdown().await;
            drop(stream);
            let _ = closed.send(conn);
            return;
        }
    }
}

/// Reads up to and including the blank line; returns the head's text and keeps what follows in
/// `buf`. `None` when the peer closed (or broke) the connection first.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A gateway with the public route `/w` in front of the upstream `wire` at `up`.
async fn gateway(up: &Scripted) -> TestGateway {
    let config = format!(
        "{}{}",
        upstream_toml("wire", &[up.addr], "response_timeout = \"3s\""),
        route_toml("/w", "wire", "")
    );
    TestGateway::start(&config).await
}

fn clients(gw: &TestGateway) -> [Client; 2] {
    [gw.client(), gw.h2_client()]
}

fn all<'r>(resp: &'r Resp, name: &str) -> Vec<&'r str> {
    resp.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

async fn head(client: &Client, path: &str) -> Resp {
    client
        .send(Request::head(path).body(empty()).unwrap())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_body_and_headers_arrive_intact() {
    let up = Scripted::canned(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nX-Custom: a\r\n\
         X-Multi: one\r\nX-Multi: two\r\nContent-Length: 13\r\n\r\nhello, world!",
    )
    .await;
    let gw = gateway(&up).await;

    for client in clients(&gw) {
        let resp = client.get("/w/cl?q=1").await;
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        assert_eq!(resp.text(), "hello, world!");
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(resp.header("x-custom"), Some("a"));
        assert_eq!(all(&resp, "x-multi"), ["one", "two"]);
    }
    let heads = up.heads();
    assert!(
        heads
            .iter()
            .all(|h| h.method == "GET" && h.path == "/w/cl?q=1"),
        "{heads:?}"
    );
    assert_eq!(up.conns(), [0, 0], "one kept-alive upstream connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_with_extensions_and_trailers_arrives_joined() {
    let up = Scripted::canned(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;ext=1\r\nhello\r\n1;a=b;c=\"d\"\r\n \r\n6\r\nchunky\r\n\
         0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
    )
    .await;
    let gw = gateway(&up).await;

    for client in clients(&gw) {
        let resp = client.get("/w/chunked").await;
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        assert_eq!(resp.text(), "hello chunky");
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        let te = all(&resp, "transfer-encoding");
        assert!(matches!(te[..], [] | ["chunked"]), "{te:?}");
    }
    let h2 = gw.h2_client().get("/w/chunked").await;
    assert_eq!(h2.text(), "hello chunky");
    assert_eq!(
        h2.header("transfer-encoding"),
        None,
        "no Transfer-Encoding over h2"
    );
    // The trailer section was consumed to its end: the connection carried the next responses.
    assert_eq!(up.conns(), [0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_body_arrives_and_next_request_uses_a_new_connection() {
    let up = Scripted::start(|h| {
        let body = format!("until close: {} on {}", h.path, h.conn);
        close(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}"
        ))
    })
    .await;
    let gw = gateway(&up).await;
    each_on_a_new_connection(&up, &gw, |path, i| format!("until close: {path} on {i}")).await;
}

/// Three GETs (h1, h2, h1) each get 200 and `body(path, i)`, on upstream connections 0, 1, 2.
async fn each_on_a_new_connection(
    up: &Scripted,
    gw: &TestGateway,
    body: impl Fn(&str, usize) -> String,
) {
    let [h1, h2] = clients(gw);
    for (i, (client, path)) in [(&h1, "/w/a"), (&h2, "/w/b"), (&h1, "/w/c")]
        .into_iter()
        .enumerate()
    {
        let resp = client.get(path).await;
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        assert_eq!(resp.text(), body(path, i));
    }
    assert_eq!(up.conns(), [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_response_arrives_and_its_connection_is_not_reused() {
    // The upstream would answer more on the same connection, but an HTTP/1.0 response without
    // `Connection: keep-alive` ends its connection (RFC 9112 §9.3): the next request needs a new one.
    let up = Scripted::start(|h| {
        let body = format!("one-oh {} on {}", h.path, h.conn);
        keep(format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
    .await;
    let gw = gateway(&up).await;
    each_on_a_new_connection(&up, &gw, |path, i| format!("one-oh {path} on {i}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_is_reused_and_connection_close_is_honoured() {
    let up = Scripted::start(|h| keep(ok(format!("c{}r{}", h.conn, h.seq)))).await;
    let gw = gateway(&up).await;
    let mut seq = 0;
    for client in clients(&gw) {
        for _ in 0..3 {
            let resp = client.get("/w/ka").await;
            assert_eq!(resp.status, 200, "{:?}", resp.body);
            assert_eq!(resp.text(), format!("c0r{seq}"));
            seq += 1;
        }
    }
    assert_eq!(
        up.conns(),
        [0; 6],
        "six sequential GETs on one upstream connection"
    );
    let seqs: Vec<_> = up.heads().iter().map(|h| h.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    assert_eq!(gw.get("/w/ka").await.text(), "c0r6");

    let up = Scripted::start(|h| {
        let body = format!("c{}r{}", h.conn, h.seq);
        close(format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
    .await;
    let gw = gateway(&up).await;
    let mut conn = 0;
    for client in clients(&gw) {
        for _ in 0..3 {
            let resp = client.get("/w/close").await;
            assert_eq!(resp.status, 200, "{:?}", resp.body);
            assert_eq!(resp.text(), format!("c{conn}r0"));
            conn += 1;
        }
    }
    assert_eq!(up.conns(), [0, 1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_response_with_content_length_has_no_body_and_connection_is_reused() {
    let up = Scripted::start(|h| match h.method.as_str() {
        "HEAD" => keep("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"),
        _ => keep(ok(format!("after head c{}r{}", h.conn, h.seq))),
    })
    .await;
    let gw = gateway(&up).await;

    let [h1, h2] = clients(&gw);
    let resp = head(&h1, "/w/h").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("10"));
    assert!(resp.body.is_empty());
    assert_eq!(h1.get("/w/g").await.text(), "after head c0r1");

    let resp = head(&h2, "/w/h").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("10"));
    assert!(resp.body.is_empty());
    assert_eq!(h2.get("/w/g").await.text(), "after head c0r3");

    let methods: Vec<_> = up.heads().iter().map(|h| h.method.clone()).collect();
    assert_eq!(methods, ["HEAD", "GET", "HEAD", "GET"]);
    assert_eq!(up.conns(), [0; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_and_not_modified_are_delivered_and_connection_is_reused() {
    let up = Scripted::start(|h| match h.path.as_str() {
        "/w/204" => keep("HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n"),
        // A 304 may carry the length of the representation it stands for; it still has no body.
        "/w/304" => keep("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 50\r\n\r\n"),
        _ => keep(ok(format!("c{}r{}", h.conn, h.seq))),
    })
    .await;
    let gw = gateway(&up).await;

    let mut seq = 0;
    for client in clients(&gw) {
        let resp = client.get("/w/204").await;
        assert_eq!(resp.status, StatusCode::NO_CONTENT);
        assert_eq!(resp.header("x-kind"), Some("none"));
        assert!(resp.body.is_empty());
        let resp = client.get("/w/304").await;
        assert_eq!(resp.status, StatusCode::NOT_MODIFIED);
        assert_eq!(resp.header("etag"), Some("\"v1\""));
        assert!(resp.body.is_empty());
        assert_eq!(client.get("/w/ok").await.text(), format!("c0r{}", seq + 2));
        seq += 3;
    }
    assert_eq!(up.conns(), [0; 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_are_skipped_and_the_final_one_delivered() {
    let up = Scripted::canned(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
         HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 5\r\n\r\nfinal",
    )
    .await;
    let gw = gateway(&up).await;

    for client in clients(&gw) {
        let resp = client.get("/w/hints").await;
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        assert_eq!(resp.header("x-final"), Some("yes"));
        assert_eq!(resp.text(), "final");
    }
    assert_eq!(up.conns(), [0, 0]);
}

/// `/w/bad` gets `bad`, anything else a good answer naming its connection and request number.
/// Over h1 then h2: `/w/bad` is 502, and the next `/w/good` is served on a new connection.
async fn assert_502_then_recovers(case: &str, bad: Vec<u8>, close_after: bool) {
    let up = Scripted::start(move |h| match h.path.as_str() {
        "/w/bad" => Reply {
            bytes: bad.clone(),
            close: close_after,
        },
        _ => keep(ok(format!("c{}r{}", h.conn, h.seq))),
    })
    .await;
    let gw = gateway(&up).await;

    let [h1, h2] = clients(&gw);
    let resp = h1.get("/w/bad").await;
    assert_eq!(resp.error(502), UNAVAILABLE, "{case}: h1");
    assert_eq!(
        h1.get("/w/good").await.text(),
        "c1r0",
        "{case}: next request, new connection"
    );
    // The good connection is pooled: h2's bad request goes on it, and the next needs another.
    let resp = h2.get("/w/bad").await;
    assert_eq!(resp.error(502), UNAVAILABLE, "{case}: h2");
    assert_eq!(
        h2.get("/w/good").await.text(),
        "c2r0",
        "{case}: next request, new connection"
    );
    let paths: Vec<_> = up.heads().iter().map(|h| h.path.clone()).collect();
    assert_eq!(
        paths,
        ["/w/bad", "/w/good", "/w/bad", "/w/good"],
        "{case}: never resent"
    );
    assert_eq!(
        up.conns(),
        [0, 1, 1, 2],
        "{case}: a broken connection is never reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_responses_get_502_and_the_gateway_keeps_serving() {
    // The upstream keeps these connections open: the gateway must drop them itself.
    let kept_open: [(&str, &[u8]); 4] = [
        ("garbage status line", b"HELLO\r\n\r\n"),
        (
            "header line without a colon",
            b"HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "invalid Content-Length",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok",
        ),
        (
            "two different Content-Lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        ),
    ];
    for (case, bytes) in kept_open {
        assert_502_then_recovers(case, bytes.to_vec(), false).await;
    }
    assert_502_then_recovers("closed before any byte", Vec::new(), true).await;
    assert_502_then_recovers(
        "closed in the middle of the head",
        b"HTTP/1.1 200 OK\r\nContent-Ty".to_vec(),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_heads_get_502() {
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-Header-{i:03}: {}\r\n", "v".repeat(84)).as_bytes());
    }
    many.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
    assert_502_then_recovers("200 headers of 100 bytes", many, false).await;

    let mut huge = b"HTTP/1.1 200 OK\r\nX-Huge: ".to_vec();
    huge.resize(huge.len() + 500 * 1024, b'h');
    huge.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
    assert_502_then_recovers("one 500 KiB header", huge, false).await;
}

/// What a client saw of a response whose body may break: status, `content-length`, the body
/// bytes that arrived, and the body's error, if it failed.
#[derive(Debug)]
struct Partial {
    status: StatusCode,
    length: Option<String>,
    received: Vec<u8>,
    error: Option<String>,
}

/// `GET path`, reading the body frame by frame; `Err` when the exchange failed before the head.
async fn get_partial(client: &Client, path: &str) -> Result<Partial, String> {
    let req = Request::get(path).body(empty()).unwrap();
    let resp = client
        .try_send_streaming(req)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let status = resp.status();
    let length = resp
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut body = resp.into_body();
    let mut received = Vec::new();
    let error = loop {
        match bounded("the truncated body", body.frame()).await {
            None => break None,
            Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap_or_default()),
            Some(Err(e)) => break Some(format!("{e:?}")),
        }
    };
    Ok(Partial {
        status,
        length,
        received,
        error,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_mid_body_never_gives_a_complete_body() {
    const SENT: &[u8] = b"0123456789";
    let up = Scripted::start(|h| match h.path.as_str() {
        "/w/trunc" => {
            close([&b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"[..], SENT].concat())
        }
        _ => keep(ok(format!("c{}r{}", h.conn, h.seq))),
    })
    .await;
    let gw = gateway(&up).await;
    let [h1, h2] = clients(&gw);

    // Today (hyper's client) the gateway has the upstream's head before the body breaks, so it
    // has already answered 200 with the upstream's `content-length: 100`; then:
    // - h1: the client gets the head and (in every run seen) the 10 bytes, then the gateway drops
    //   the connection without a TLS close_notify: the body fails (unexpected EOF) short of 100.
    // - h2: the gateway resets the stream (RST_STREAM INTERNAL_ERROR). The client usually has
    //   the head and 10 or 0 bytes first; about 1 run in 100 the reset overtakes the head and
    //   the request itself fails.
    // Either way no client ever holds a complete, successful 100-byte body.
    let p = get_partial(&h1, "/w/trunc")
        .await
        .expect("h1 response head");
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.length.as_deref(), Some("100"), "{p:?}");
    assert!(SENT.starts_with(&p.received), "{p:?}");
    assert!(
        p.error.is_some(),
        "h1: the body must fail, not end short: {p:?}"
    );

    match get_partial(&h2, "/w/trunc").await {
        Err(reset_before_head) => assert!(
            reset_before_head.contains("stream error"),
            "{reset_before_head}"
        ),
        Ok(p) => {
            assert_eq!(p.status, 200, "{p:?}");
            assert!(SENT.starts_with(&p.received), "{p:?}");
            let error = p.error.as_deref().unwrap_or_default();
            assert!(error.contains("Reset"), "h2: the stream is reset: {p:?}");
        }
    }
    // Neither broken connection is used again; the next requests share a new one.
    assert_eq!(h1.get("/w/good").await.text(), "c2r0");
    assert_eq!(h2.get("/w/good").await.text(), "c2r1");
    assert_eq!(up.conns(), [0, 1, 2, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_the_upstream_closed_while_pooled_is_not_used() {
    // Every connection answers one request as keep-alive, then the upstream closes it.
    let mut up = Scripted::start(|h| close(ok(format!("c{}r{}", h.conn, h.seq)))).await;
    let gw = gateway(&up).await;
    let [h1, h2] = clients(&gw);

    for (i, client) in [&h1, &h2, &h1, &h2].into_iter().enumerate() {
        let resp = client.get("/w/stale").await;
        assert_eq!(resp.status, 200, "request {i}: {:?}", resp.body);
        assert_eq!(
            resp.text(),
            format!("c{i}r0"),
            "request {i} on a new connection"
        );
        // The connection is closed before the next request is sent.
        assert_eq!(up.next_closed().await, i);
    }
    assert_eq!(up.conns(), [0, 1, 2, 3]);
}

/// `len` bytes of a pattern that does not repeat every power of two.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_arrive_intact() {
    const LEN: usize = 3 * 1024 * 1024;
    let body = pattern(LEN);
    let sized = ok(&body);
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let sizes = [1, 4096, 65_536 + 7, 13, 300_001];
    let mut at = 0;
    for size in sizes.iter().cycle() {
        let end = (at + size).min(LEN);
        chunked.extend_from_slice(format!("{:x}\r\n", end - at).as_bytes());
        chunked.extend_from_slice(&body[at..end]);
        chunked.extend_from_slice(b"\r\n");
        at = end;
        if at == LEN {
            break;
        }
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let up = Scripted::start(move |h| match h.path.as_str() {
        "/w/sized" => keep(sized.clone()),
        _ => keep(chunked.clone()),
    })
    .await;
    let gw = gateway(&up).await;

    for client in clients(&gw) {
        for path in ["/w/sized", "/w/chunked"] {
            let resp = client.get(path).await;
            assert_eq!(resp.status, 200, "{path}");
            assert_eq!(resp.body.len(), LEN, "{path}");
            assert!(resp.body[..] == body[..], "{path}: the bytes differ");
        }
    }
    assert_eq!(up.conns(), [0; 4]);
}
