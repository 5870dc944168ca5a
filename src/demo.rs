//! `gatehouse demo`: the gateway plus in-process mock `api-service` and `configuration-service`
//! on free loopback ports, a generated config and self-signed certificate, and curl lines that
//! work as pasted. The mocks answer JSON describing the request they received, so the lines show
//! what gatehouse forwards (path after strip, `X-Forwarded-*`, `X-Request-Id`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use http::{Request, Response, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::http::body::{self, Body};
use crate::server::Gateway;

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    /// The gateway.
    pub gateway: Gateway,
    /// The config file written for it.
    pub config: PathBuf,
    /// The certificate to trust (`curl --cacert`).
    pub cert: PathBuf,
    /// Ready-to-paste curl commands.
    pub curl_lines: Vec<String>,
}

/// Runs the demo until Ctrl-C.
///
/// # Errors
/// The folder cannot be written or a listener cannot be bound.
pub async fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gatehouse-demo-{}", std::process::id()))
    });
    let demo = start(&dir).await?;
    println!(
        "gatehouse demo is running (config: {})\n",
        demo.config.display()
    );
    println!("Try these:\n");
    for line in &demo.curl_lines {
        println!("  {line}");
    }
    println!("\nPress Ctrl-C to stop.");
    crate::cli::wait_for_stop_signal().await;
    demo.gateway.shutdown();
    demo.gateway.wait().await
}

/// Starts the mocks and the gateway with a config written into `dir`.
///
/// # Errors
/// The folder cannot be written or a listener cannot be bound.
pub async fn start(dir: &Path) -> anyhow::Result<Demo> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let api = spawn_mock("api-service").await?;
    let configuration = spawn_mock("configuration-service").await?;
    let config = dir.join("gateway.toml");
    let listen = preferred_listen();
    std::fs::write(&config, demo_config(listen, api, configuration))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let gateway = Gateway::start(&config).await?;
    let cert = dir.join("tls.crt");
    let curl_lines = curl_lines(gateway.https_addr(), &cert);
    Ok(Demo {
        gateway,
        config,
        cert,
        curl_lines,
    })
}

/// 127.0.0.1:8443 when free (easy to remember), else any free port.
fn preferred_listen() -> SocketAddr {
    let preferred = SocketAddr::from(([127, 0, 0, 1], 8443));
    match std::net::TcpListener::bind(preferred) {
        Ok(_) => preferred,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

fn demo_config(listen: SocketAddr, api: SocketAddr, configuration: SocketAddr) -> String {
    format!(
        r#"# Written by `gatehouse demo`.
[server]
listen = "{listen}"
admin_listen = "127.0.0.1:0"

[tls]
cert = "tls.crt"
key = "tls.key"
self_signed_hosts = ["localhost", "127.0.0.1"]

[[upstreams]]
name = "api-service"
targets = ["{api}"]

[[upstreams]]
name = "configuration-service"
targets = ["{configuration}"]

[[routes]]
path = "/api/configuration-service"
upstream = "configuration-service"
strip_prefix = true
auth = ["public"]

[[routes]]
path = "/api"
upstream = "api-service"
strip_prefix = true
auth = ["public"]

[[routes]]
path = "/nginx-health"
respond = {{ status = 200, body = "OK\n" }}
"#
    )
}

fn curl_lines(addr: SocketAddr, cert: &Path) -> Vec<String> {
    let base = format!("https://localhost:{}", addr.port());
    let cacert = cert.display();
    vec![
        format!("curl --cacert {cacert} {base}/api/v1/metadata"),
        format!(
            "curl --cacert {cacert} {base}/api/configuration-service/v1/project/sockshop/resource/helm%2Fcarts.tgz"
        ),
        format!("curl --cacert {cacert} {base}/nginx-health"),
        format!("curl --cacert {cacert} --http2 -i {base}/api/v1/metadata"),
    ]
}

/// A mock service on a free loopback port that answers JSON describing each request.
async fn spawn_mock(name: &'static str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a mock upstream")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service =
                    service_fn(move |req| async move { Ok::<_, Infallible>(describe(name, &req)) });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn describe(service: &str, req: &Request<Incoming>) -> Response<Body> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let description = serde_json::json!({
        "service": service,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "host": header("host"),
        "x_forwarded_for": header("x-forwarded-for"),
        "x_forwarded_proto": header("x-forwarded-proto"),
        "x_request_id": header("x-request-id"),
        "x_auth_subject": header("x-auth-subject"),
    });
    let mut response = Response::new(body::full(format!("{description:#}\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
