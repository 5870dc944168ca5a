//! Connection soundness (SPEC §8.7, §8.8; issue 9 faults 7, 8 and 13): idle HTTP/2 connections
//! get GOAWAY however many PINGs flow, WebSocket tunnels hold a `max_connections` permit and end
//! with `shutdown_grace`, the admin listener has header limits and a connection cap, and a
//! pseudo-header in HTTP/2 trailers is a stream error.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::client::{connect_tls, tls_config};
use crate::support::raw::read_until_closed;
use crate::support::{
    TestGateway, Upstream, Ws, channel_body, route_toml, static_route_toml, upstream_toml, within,
};

const PING_ROUTE: &str = "respond = { status = 200, body = \"pong\" }";

/// A gateway with `[limits]` lines `limits` and a static `/ping` route.
async fn gateway_with_limits(limits: &str, routes: &str) -> TestGateway {
    TestGateway::start(&format!(
        "[limits]\n{limits}\n{}{routes}",
        static_route_toml("/ping", PING_ROUTE)
    ))
    .await
}

// ---------------------------------------------------------------------------------------------
// A hand-driven HTTP/2 client: frames written and read as bytes, header blocks as HPACK literals.

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

struct H2 {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl H2 {
    /// TLS with ALPN `h2`, the preface and an empty SETTINGS frame.
    async fn connect(addr: SocketAddr) -> H2 {
        let tls = within(
            "h2 TLS connect",
            connect_tls(
                addr,
                "localhost",
                tls_config(&[b"h2"], rustls::ALL_VERSIONS),
            ),
        )
        .await
        .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut h2 = H2 {
            tls,
            buf: Vec::new(),
        };
        h2.write(PREFACE).await;
        h2.send(SETTINGS, 0, 0, &[]).await;
        h2
    }

    async fn write(&mut self, bytes: &[u8]) {
        within("h2 write", self.tls.write_all(bytes)).await.unwrap();
        within("h2 flush", self.tls.flush()).await.unwrap();
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = len[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend(payload);
        self.write(&frame).await;
    }

    /// The next frame (SETTINGS and PINGs from the server are acknowledged on the way), or `None` once the
    /// server closed. Cancel-safe: bytes read are kept in `buf`.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.parse() {
                if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                    self.send(SETTINGS, ACK, 0, &[]).await;
                    continue;
                }
                if frame.kind == PING && frame.flags & ACK == 0 {
                    self.send(PING, ACK, 0, &frame.payload).await;
                    continue;
                }
                return Some(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn parse(&mut self) -> Option<Frame> {
        if self.buf.len() < 9 {
            return None;
        }
        let len = usize::from(self.buf[0]) << 16
            | usize::from(self.buf[1]) << 8
            | usize::from(self.buf[2]);
        if self.buf.len() < 9 + len {
            return None;
        }
        let head: Vec<u8> = self.buf.drain(..9).collect();
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload: self.buf.drain(..len).collect(),
        })
    }

    /// Reads frames until stream `stream` ends (END_STREAM or RST_STREAM); returns them.
    async fn until_stream_ends(&mut self, stream: u32) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = within("h2 frame", self.frame())
                .await
                .expect("connection open while the stream is");
            let ends = frame.stream == stream
                && (frame.kind == RST_STREAM
                    || (matches!(frame.kind, DATA | HEADERS) && frame.flags & END_STREAM != 0));
            frames.push(frame);
            if ends {
                return frames;
            }
        }
    }
}

/// An HPACK literal field without indexing, the name given by its static-table index.
fn indexed_name(index: u8, value: &str) -> Vec<u8> {
    let mut out = vec![index, u8::try_from(value.len()).unwrap()];
    out.extend(value.as_bytes());
    out
}

/// An HPACK literal field without indexing, with a literal name.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0, u8::try_from(name.len()).unwrap()];
    out.extend(name.as_bytes());
    out.push(u8::try_from(value.len()).unwrap());
    out.extend(value.as_bytes());
    out
}

/// A request header block: `:method` (0x82 GET, 0x83 POST), `:scheme https`, `:path`, `:authority`.
fn request_block(method: u8, path: &str) -> Vec<u8> {
    let mut block = vec![method, 0x87];
    block.extend(indexed_name(4, path));
    block.extend(indexed_name(1, "localhost"));
    block
}

/// `:status 200` as HPACK encodes it (static index 8).
fn is_status_200(frame: &Frame) -> bool {
    frame.kind == HEADERS && frame.payload.first() == Some(&0x88)
}

// ---------------------------------------------------------------------------------------------
// §8.7 idle means idle

/// Pings every 100 ms until the server closes; returns every GOAWAY it sent and when the first
/// one came. hyper closes gracefully in two steps: GOAWAY with the highest stream id, a PING,
/// then GOAWAY with the last stream it processed.
async fn ping_until_closed(h2: &mut H2) -> (Instant, Vec<Frame>) {
    within("GOAWAY and close on an idle h2 connection", async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut goaways = Vec::new();
        let mut first = None;
        loop {
            tokio::select! {
                frame = h2.frame() => match frame {
                    Some(frame) if frame.kind == GOAWAY => {
                        first.get_or_insert_with(Instant::now);
                        goaways.push(frame);
                    }
                    Some(_) => {}
                    None => {
                        let first = first.expect("closed without GOAWAY");
                        return (first, goaways);
                    }
                },
                _ = tick.tick() => h2.send(PING, 0, 0, b"gatehous").await,
            }
        }
    })
    .await
}

/// The last-stream-id and error code of the final GOAWAY.
fn final_goaway(goaways: &[Frame]) -> (u32, u32) {
    let last = goaways.last().expect("a GOAWAY");
    let id = u32::from_be_bytes(last.payload[..4].try_into().unwrap());
    let code = u32::from_be_bytes(last.payload[4..8].try_into().unwrap());
    (id, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connection_gets_goaway_although_pings_flow() {
    let gw = gateway_with_limits("idle_timeout = \"300ms\"", "").await;
    let mut h2 = H2::connect(gw.https).await;
    h2.send(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &request_block(0x82, "/ping"),
    )
    .await;
    let frames = h2.until_stream_ends(1).await;
    assert!(frames.iter().any(is_status_200), "{frames:?}");
    let idle_from = Instant::now();

    // The client pings every 100 ms: each PING and its ACK are bytes on the wire, which the
    // first version counted as activity, so this connection never closed.
    let (first_goaway, goaways) = ping_until_closed(&mut h2).await;
    let waited = first_goaway - idle_from;
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "GOAWAY after {waited:?} for idle_timeout 300ms"
    );
    assert_eq!(final_goaway(&goaways), (1, 0), "last stream 1, NO_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_without_any_stream_gets_goaway() {
    let gw = gateway_with_limits("idle_timeout = \"300ms\"", "").await;
    let mut h2 = H2::connect(gw.https).await;
    let (_, goaways) = ping_until_closed(&mut h2).await;
    assert_eq!(final_goaway(&goaways), (0, 0), "no stream served, NO_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http1_keep_alive_connection_still_closes() {
    let gw = gateway_with_limits("idle_timeout = \"300ms\"", "").await;
    let mut tls = gw.raw_tls().await;
    let request = b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n";
    within("write", tls.write_all(request)).await.unwrap();
    let started = Instant::now();
    let (bytes, closed) = read_until_closed(&mut tls).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("pong"), "{text}");
    assert!(
        closed,
        "an idle keep-alive connection is closed after idle_timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Streams `chunks` chunks, one every `every`.
async fn trickling_upstream(chunks: usize, every: Duration) -> Upstream {
    Upstream::spawn_raw(move |_req| async move {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            for i in 0..chunks {
                tokio::time::sleep(every).await;
                if tx.send(format!("chunk {i}\n").into()).await.is_err() {
                    return;
                }
            }
        });
        http::Response::new(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_but_streaming_responses_are_not_idle() {
    let up = trickling_upstream(8, Duration::from_millis(100)).await;
    let routes = format!(
        "{}{}",
        upstream_toml("slow", &[up.addr], ""),
        route_toml("/slow", "slow", "")
    );
    let gw = gateway_with_limits("idle_timeout = \"300ms\"", &routes).await;
    let want: String = (0..8).map(|i| format!("chunk {i}\n")).collect();
    for client in [gw.client(), gw.h2_client()] {
        let resp = client.get("/slow").await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), want, "{:?}", resp.version);
    }
}

// ---------------------------------------------------------------------------------------------
// §8.7 WebSocket tunnels: a permit for their whole life, ended by shutdown_grace

async fn ws_gateway(limits: &str) -> (TestGateway, Upstream) {
    let up = Upstream::websocket_echo().await;
    let routes = format!(
        "{}{}",
        upstream_toml("echo", &[up.addr], ""),
        route_toml("/ws", "echo", "websocket = true")
    );
    (gateway_with_limits(limits, &routes).await, up)
}

async fn echo(ws: &mut Ws, text: &str) {
    within("ws send", ws.send(Message::text(text)))
        .await
        .unwrap();
    let got = within("ws echo", ws.next()).await.expect("open").unwrap();
    assert_eq!(got, Message::text(text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnels_hold_their_connection_permit() {
    let (gw, _up) = ws_gateway("max_connections = 2").await;
    let mut first = gw.websocket("/ws", None).await.expect("first tunnel");
    let mut second = gw.websocket("/ws", None).await.expect("second tunnel");
    echo(&mut first, "one").await;
    echo(&mut second, "two").await;

    let client = gw.client();
    let mut third = tokio::spawn(async move { client.get("/ping").await });
    let early = tokio::time::timeout(Duration::from_millis(700), &mut third).await;
    assert!(
        early.is_err(),
        "two open tunnels use both max_connections permits; a third connection is not served"
    );

    within("ws close", first.close(None)).await.unwrap();
    drop(first);
    let resp = within("third connection served once a tunnel ended", third)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    echo(&mut second, "still open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnel_ends_when_shutdown_grace_is_over() {
    let (gw, _up) = ws_gateway("drain_delay = \"200ms\"\nshutdown_grace = \"800ms\"").await;
    let mut ws = gw.websocket("/ws", None).await.expect("tunnel");
    echo(&mut ws, "before").await;

    let started = Instant::now();
    gw.shutdown();
    echo(&mut ws, "during the drain").await;
    within("tunnel closed by the end of shutdown_grace", async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_millis(800) && lived < Duration::from_millis(2500),
        "tunnel ended {lived:?} after shutdown; drain_delay + shutdown_grace = 1s"
    );
    within("gateway stopped", gw.wait()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// §8.8 admin listener

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_closes_a_dribbled_request_head_after_header_read_timeout() {
    let gw = gateway_with_limits("header_read_timeout = \"1s\"", "").await;
    let mut tcp = within("admin connect", TcpStream::connect(gw.admin.unwrap()))
        .await
        .unwrap();
    let head = format!("GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(64));
    let started = Instant::now();
    let closed = within("admin closes the dribbling connection", async {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut sink = [0u8; 1024];
        for byte in head.as_bytes() {
            tokio::select! {
                read = tcp.read(&mut sink) => match read {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                },
                _ = tick.tick() => {
                    if tcp.write_all(&[*byte]).await.is_err() {
                        return true;
                    }
                }
            }
        }
        false
    })
    .await;
    assert!(
        closed,
        "the head was dribbled to its end and still the connection stayed open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_oversized_headers_with_431() {
    let gw = gateway_with_limits("max_header_bytes = \"8KiB\"", "").await;
    let mut tcp = TcpStream::connect(gw.admin.unwrap()).await.unwrap();
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    let _ = within("write", tcp.write_all(request.as_bytes())).await;
    let (bytes, _) = read_until_closed(&mut tcp).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");
}

/// `GET /healthz` on a keep-alive admin connection; true once `ok` came back.
async fn admin_healthz(tcp: &mut TcpStream) -> bool {
    if tcp
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok\n") {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    got.starts_with(b"HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_at_most_64_connections_at_once() {
    let gw = gateway_with_limits("", "").await;
    let admin = gw.admin.unwrap();
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut tcp = within("admin connect", TcpStream::connect(admin))
            .await
            .unwrap();
        assert!(within("held connection served", admin_healthz(&mut tcp)).await);
        held.push(tcp);
    }
    let mut extra = within("65th connect", TcpStream::connect(admin))
        .await
        .unwrap();
    let extra = tokio::spawn(async move { admin_healthz(&mut extra).await });
    tokio::pin!(extra);
    let early = tokio::time::timeout(Duration::from_millis(700), &mut extra).await;
    assert!(
        early.is_err(),
        "the 65th admin connection is served while 64 are open"
    );
    drop(held.pop());
    assert!(within("65th served once one closed", extra).await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// Fault 13: pseudo-header fields in HTTP/2 trailers

async fn post_with_trailers(gw: &TestGateway, trailers: &[u8]) -> Vec<Frame> {
    let mut h2 = H2::connect(gw.https).await;
    h2.send(HEADERS, END_HEADERS, 1, &request_block(0x83, "/echo/t"))
        .await;
    h2.send(DATA, 0, 1, b"hi").await;
    h2.send(HEADERS, END_STREAM | END_HEADERS, 1, trailers)
        .await;
    h2.until_stream_ends(1).await
}

async fn echo_gateway() -> (TestGateway, Upstream) {
    let up = Upstream::echo().await;
    let routes = format!(
        "{}{}",
        upstream_toml("echo", &[up.addr], ""),
        route_toml("/echo", "echo", "")
    );
    (gateway_with_limits("", &routes).await, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudo_header_in_h2_trailers_is_a_stream_error() {
    let (gw, up) = echo_gateway().await;
    let mut trailers = literal("x-checksum", "abc");
    trailers.extend(indexed_name(4, "/evil"));
    let frames = post_with_trailers(&gw, &trailers).await;
    assert!(!frames.iter().any(is_status_200), "{frames:?}");
    let reset = frames.last().expect("frames");
    assert_eq!(reset.kind, RST_STREAM, "{frames:?}");
    assert_eq!(reset.payload, 1u32.to_be_bytes(), "PROTOCOL_ERROR");

    // A pseudo-header first in the block (which h2 alone accepts and drops).
    let frames = post_with_trailers(&gw, &indexed_name(4, "/evil")).await;
    let reset = frames.last().expect("frames");
    assert_eq!(reset.kind, RST_STREAM, "{frames:?}");
    assert_eq!(reset.payload, 1u32.to_be_bytes(), "PROTOCOL_ERROR");
    assert!(
        up.requests().iter().all(|r| r.body.is_empty()),
        "the upstream never receives a completed request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regular_h2_trailers_still_pass() {
    let (gw, up) = echo_gateway().await;
    let frames = post_with_trailers(&gw, &literal("x-checksum", "abc")).await;
    assert!(frames.iter().any(is_status_200), "{frames:?}");
    let got = up.single_request();
    assert_eq!(got.body, "hi");
}
