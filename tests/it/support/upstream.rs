//! Upstream servers for the gateway to proxy to: real hyper HTTP/1.1 servers on `127.0.0.1:0`
//! that record every request they get (hyper's own `tests/server.rs` pattern), so tests assert
//! what the upstream really received.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{Body, empty, full, within};

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// Path and query exactly as they arrived on the request line.
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The whole body for [`Upstream::spawn`] upstreams; empty for raw handlers, which read
    /// the body themselves.
    pub body: Bytes,
    /// The gateway's side of the upstream connection.
    pub peer: SocketAddr,
}

impl Recorded {
    /// The header's value as text, if present (first one).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header value is text"))
    }

    /// Every value of the header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("header value is text"))
            .collect()
    }

    /// The request described as JSON (what [`Upstream::echo`] answers).
    pub fn describe(&self) -> serde_json::Value {
        let mut headers = serde_json::Map::new();
        for name in self.headers.keys() {
            headers.insert(
                name.as_str().to_owned(),
                serde_json::json!(self.header_all(name.as_str())),
            );
        }
        serde_json::json!({
            "method": self.method.as_str(),
            "uri": self.uri,
            "version": format!("{:?}", self.version),
            "headers": headers,
            "body": String::from_utf8_lossy(&self.body),
        })
    }
}

type Reply = Arc<dyn Fn(&Recorded) -> Response<Body> + Send + Sync>;
type RawHandler =
    Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

#[derive(Clone)]
enum Handler {
    /// Read the whole body, record, answer.
    Buffered(Reply),
    /// Record the head, hand the request over.
    Raw(RawHandler),
}

/// A running upstream. Dropping it stops accepting.
pub struct Upstream {
    pub addr: SocketAddr,
    log: watch::Receiver<Vec<Recorded>>,
    accept: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Upstream {
    /// An upstream that reads each whole request, records it, and answers `reply(&request)`.
    pub async fn spawn(
        reply: impl Fn(&Recorded) -> Response<Body> + Send + Sync + 'static,
    ) -> Upstream {
        Upstream::start(Handler::Buffered(Arc::new(reply))).await
    }

    /// An upstream that records each request head and lets `handler` read the body and
    /// answer (for streaming, holding, upgrades).
    pub async fn spawn_raw<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Upstream::start(Handler::Raw(Arc::new(move |req| Box::pin(handler(req))))).await
    }

    /// Answers 200 with JSON describing the request (method, uri, headers, body).
    pub async fn echo() -> Upstream {
        Upstream::spawn(|req| {
            Response::builder()
                .header(CONTENT_TYPE, "application/json")
                .body(full(req.describe().to_string()))
                .unwrap()
        })
        .await
    }

    /// Answers 200 with a fixed text body (to tell several upstreams apart).
    pub async fn text(body: &'static str) -> Upstream {
        Upstream::spawn(move |_| Response::new(full(body))).await
    }

    /// Holds every request until the returned gate opens, then answers 200 `released`.
    pub async fn held() -> (Upstream, Gate) {
        let gate = Gate::new();
        let held = gate.clone();
        let upstream = Upstream::spawn_raw(move |req| {
            let gate = held.clone();
            async move {
                let _ = req.into_body().collect().await;
                gate.opened().await;
                Response::new(full("released"))
            }
        })
        .await;
        (upstream, gate)
    }

    /// A WebSocket echo server (hyper upgrade + tungstenite); a request that is not a WebSocket
    /// handshake gets 200 `not a websocket handshake`.
    pub async fn websocket_echo() -> Upstream {
        Upstream::spawn_raw(websocket_echo).await
    }

    /// An address that refuses connections for the rest of the test run: a socket bound to it
    /// that never listens, so a SYN gets a RST (`ECONNREFUSED`), and held (without
    /// `SO_REUSEADDR`) so no other test's listener can take the port. Binding a listener and
    /// dropping it, as this once did, freed the port for anyone.
    pub fn refusing() -> SocketAddr {
        static RESERVED: std::sync::Mutex<Vec<tokio::net::TcpSocket>> =
            std::sync::Mutex::new(Vec::new());
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        RESERVED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(socket);
        addr
    }

    async fn start(handler: Handler) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (log_tx, log) = watch::channel(Vec::new());
        let log_tx = Arc::new(log_tx);
        let accept = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let handler = handler.clone();
                let log_tx = log_tx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let handler = handler.clone();
                        let log_tx = log_tx.clone();
                        async move { Ok::<_, Infallible>(handle(handler, &log_tx, peer, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream { addr, log, accept }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.borrow().clone()
    }

    /// How many requests were received so far.
    pub fn count(&self) -> usize {
        self.log.borrow().len()
    }

    /// Waits (bounded) until at least `n` requests arrived and returns them all.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<Recorded> {
        let mut log = self.log.clone();
        let seen = within(
            &format!("upstream {} to receive {n} request(s)", self.addr),
            log.wait_for(|v| v.len() >= n),
        )
        .await
        .expect("upstream recorder is alive");
        seen.clone()
    }

    /// The only request received; panics unless exactly one arrived.
    pub fn single_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(
            requests.len(),
            1,
            "upstream {} got {} requests, expected 1: {requests:#?}",
            self.addr,
            requests.len()
        );
        requests.into_iter().next().unwrap()
    }
}

async fn handle(
    handler: Handler,
    log: &watch::Sender<Vec<Recorded>>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut recorded = Recorded {
        method: req.method().clone(),
        uri: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        version: req.version(),
        headers: req.headers().clone(),
        body: Bytes::new(),
        peer,
    };
    match handler {
        Handler::Buffered(reply) => {
            match req.into_body().collect().await {
                Ok(body) => recorded.body = body.to_bytes(),
                Err(_) => {
                    // The gateway aborted the body (e.g. over max_body_bytes): record the head.
                    log.send_modify(|v| v.push(recorded));
                    return Response::builder()
                        .status(StatusCode::BAD_REQUEST)
                        .body(full("upstream: body aborted"))
                        .unwrap();
                }
            }
            let response = reply(&recorded);
            log.send_modify(|v| v.push(recorded));
            response
        }
        Handler::Raw(handler) => {
            log.send_modify(|v| v.push(recorded));
            handler(req).await
        }
    }
}

async fn websocket_echo(mut req: Request<Incoming>) -> Response<Body> {
    let is_websocket = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = req.headers().get("sec-websocket-key").cloned();
    let (true, Some(key)) = (is_websocket, key) else {
        return Response::new(full("not a websocket handshake"));
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(empty())
        .unwrap()
}

/// A one-way latch a test opens to release held upstream work.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate(Arc::new(watch::channel(false).0))
    }

    /// Opens the gate; everything waiting in [`Gate::opened`] continues.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once the gate is open (immediately if it already is).
    pub async fn opened(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}
