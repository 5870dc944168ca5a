//! The harness every integration test uses: the gateway started in-process from a temp config
//! (`gateway`), recording upstreams (`upstream`), a rustls client that trusts the test CA and
//! speaks HTTP/1.1, h2 and WebSocket (`client`), hand-written bytes over TLS (`raw`), and the
//! test certificates (`certs`), and the ways real tools change files (`files`).
//!
//! Every wait is bounded by [`within`]; nothing sleeps to synchronise.

pub mod auth;
pub mod certs;
pub mod client;
pub mod files;
pub mod gateway;
pub mod mtls_client;
pub mod raw;
pub mod redis;
pub mod reload;
pub mod upstream;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Frame;
use tokio::sync::mpsc;

pub use certs::{SNI_HOST, certs, fingerprint, first_cert_in};
pub use client::{Client, Resp};
pub use gateway::TestGateway;
pub use upstream::{Gate, Upstream};

/// The bound on any single wait in a test: a connection, a response, a signal.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Awaits `f`, panicking with `what` if it takes longer than [`TIMEOUT`].
pub async fn within<F: IntoFuture>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f.into_future()).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// A client WebSocket over TLS to the gateway (see [`TestGateway::websocket`]).
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The body type used for requests the tests send and responses the upstreams give.
pub type Body = BoxBody<Bytes, Infallible>;

/// A body with exactly these bytes (and so a `Content-Length`).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().boxed()
}

/// A body fed chunk by chunk through the returned sender; it ends when the sender drops. It has
/// no size hint, so HTTP/1.1 sends it chunked.
pub fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChannelBody(rx).boxed())
}

struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A `[[upstreams]]` table.
pub fn upstream_toml(name: &str, targets: &[SocketAddr], extra: &str) -> String {
    let targets = targets
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("\n[[upstreams]]\nname = \"{name}\"\ntargets = [{targets}]\n{extra}\n")
}

/// A public `[[routes]]` table proxying `path` to `upstream`; `extra` adds keys.
pub fn route_toml(path: &str, upstream: &str, extra: &str) -> String {
    format!(
        "\n[[routes]]\npath = \"{path}\"\nupstream = \"{upstream}\"\nauth = [\"public\"]\n{extra}\n"
    )
}

/// A public `[[routes]]` table without an upstream (`respond`, `redirect`); `extra` adds keys.
pub fn static_route_toml(path: &str, extra: &str) -> String {
    format!("\n[[routes]]\npath = \"{path}\"\nauth = [\"public\"]\n{extra}\n")
}

/// True if `id` is a valid request id per SPEC §4: 1 to 128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}
