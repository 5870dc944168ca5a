//! Revocation latency: how long from `gatehouse token revoke` writing the store to the first
//! request refused with 401, through the real file watcher and reload path.
//!
//! Run: `cargo bench --bench revocation` (100 runs; prints p50/p99/max). The gateway serves the
//! same routes on a cleartext listener (`plain_mode = "serve"`) so the probe measures reload,
//! not TLS; a keep-alive connection probes in a tight loop, so resolution is one request.

#![allow(missing_docs)] // a bench binary
#![allow(clippy::expect_used, clippy::unwrap_used)] // a bench with a broken fixture should stop loudly

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse::server::Gateway;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const RUNS: usize = 100;
/// Give up on one run after this long (a lost event would otherwise hang the bench).
const RUN_LIMIT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = spawn_upstream().await;
    write_config(dir.path(), upstream);
    let gateway = Gateway::start(dir.path().join("gateway.toml"))
        .await
        .expect("gateway starts");
    let plain = gateway.plain_addr().expect("plain listener");
    let mut probe = connect(plain).await;
    let store = dir.path().join("tokens.toml");
    let mut latencies = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let id = format!("bench-{run}");
        let now = time::OffsetDateTime::now_utc();
        let token = gatehouse::token_cmd::create(&store, &id, &["viewer".to_owned()], None, now)
            .expect("create");
        wait_for_status(&mut probe, token.expose(), 200).await;
        let revoked_at = Instant::now();
        gatehouse::token_cmd::revoke(&store, &id).expect("revoke");
        wait_for_status(&mut probe, token.expose(), 401).await;
        latencies.push(revoked_at.elapsed());
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "revocation latency over {RUNS} runs: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pick(0.50).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
    );
    gateway.shutdown();
}

fn write_config(dir: &Path, upstream: SocketAddr) {
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
plain_listen = "127.0.0.1:0"
plain_mode = "serve"
admin_listen = "127.0.0.1:0"

[limits]
drain_delay = "0s"

[tls]
cert = "tls.crt"
key = "tls.key"

[auth]
tokens = "tokens.toml"

[[upstreams]]
name = "api"
targets = ["{upstream}"]

[[routes]]
path = "/"
upstream = "api"
auth = ["token"]
"#
    );
    std::fs::write(dir.join("gateway.toml"), config).expect("write config");
}

async fn wait_for_status(probe: &mut SendRequest<Empty<Bytes>>, token: &str, want: u16) {
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        let request = http::Request::get("/probe")
            .header("host", "bench")
            .header("x-token", token)
            .body(Empty::new())
            .unwrap();
        probe.ready().await.expect("probe connection open");
        let response = probe.send_request(request).await.expect("probe request");
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {want} within {RUN_LIMIT:?} (last {status})"
        );
    }
}

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

async fn spawn_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
