//! `gatehouse demo`: the gateway plus in-process mock `api-service` and `configuration-service`
//! on free loopback ports, a generated config, self-signed certificate and token store with a
//! freshly minted token, and curl lines that work as pasted — some allowed, some refused. The mocks answer JSON describing the request they received, so the lines show
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
use crate::secret::Secret;
use crate::server::Gateway;

/// A running demo.
#[derive(Debug)]
pub(crate) struct Demo {
    /// The gateway.
    pub(crate) gateway: Gateway,
    /// The config file written for it.
    pub(crate) config: PathBuf,
    /// Ready-to-paste curl commands.
    pub(crate) curl_lines: Vec<String>,
}

/// Runs the demo until `shutdown` completes (the CLI passes its Ctrl-C/SIGTERM future). Without
/// `dir` it works in a fresh temporary folder and removes it on the way out (a `dir` given by the
/// user is left alone).
///
/// # Errors
/// The folder cannot be written or a listener cannot be bound.
pub(crate) async fn run(
    dir: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let temporary = dir.is_none();
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("gatehouse-demo-{}", std::process::id()))
    });
    let result = run_in(&dir, shutdown).await;
    let removed = if temporary {
        std::fs::remove_dir_all(&dir)
    } else {
        Ok(())
    };
    match removed {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            errln!("warning: cannot remove {}: {error}", dir.display());
        }
        _ => {}
    }
    result
}

async fn run_in(dir: &Path, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let demo = start(dir).await?;
    outln!(
        "gatehouse demo is running (config: {})\n",
        demo.config.display()
    );
    outln!("Try these:\n");
    for line in &demo.curl_lines {
        outln!("  {line}");
    }
    if let Some(admin) = demo.gateway.admin_addr() {
        outln!("\nAdmin listener: http://{admin} (/healthz, /readyz, /metrics, /config)");
        outln!("  curl http://{admin}/metrics");
    }
    outln!("\nFolder: {}", dir.display());
    outln!("\nPress Ctrl-C to stop.");
    shutdown.await;
    demo.gateway.shutdown();
    demo.gateway.wait().await
}

/// Starts the mocks and the gateway with a config written into `dir`.
///
/// # Errors
/// The folder cannot be written or a listener cannot be bound.
pub(crate) async fn start(dir: &Path) -> anyhow::Result<Demo> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let api = spawn_mock("api-service").await?;
    let configuration = spawn_mock("configuration-service").await?;
    let config = dir.join("gateway.toml");
    let listen = preferred_listen();
    std::fs::write(&config, demo_config(listen, api, configuration))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let token = mint_token(&dir.join("tokens.toml"))?;
    let gateway = Gateway::start(&config).await?;
    let cert = dir.join("tls.crt");
    let curl_lines = curl_lines(gateway.https_addr(), &cert, token.expose());
    Ok(Demo {
        gateway,
        config,
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

[limits]
drain_delay = "0s"  # no load balancer to drain away from: Ctrl-C stops at once

[tls]
cert = "tls.crt"
key = "tls.key"
self_signed_hosts = ["localhost", "127.0.0.1"]

[auth]
tokens = "tokens.toml"
token_headers = ["x-token"]

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
auth = ["token"]
roles = ["viewer"]
write_roles = ["admin"]

[[routes]]
path = "/api"
upstream = "api-service"
strip_prefix = true
auth = ["token"]
roles = ["viewer"]

[[routes]]
path = "/nginx-health"
respond = {{ status = 200, body = "OK\n" }}
"#
    )
}

/// A fresh store with one `operator` token named `demo`.
fn mint_token(store: &Path) -> anyhow::Result<Secret<String>> {
    match std::fs::remove_file(store) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot replace {}", store.display()));
        }
    }
    let roles = ["operator".to_owned()];
    crate::token_cmd::create(
        store,
        "demo",
        &roles,
        Some("1d"),
        time::OffsetDateTime::now_utc(),
    )
}

fn curl_lines(addr: SocketAddr, cert: &Path, token: &str) -> Vec<String> {
    let base = format!("https://localhost:{}", addr.port());
    let curl = format!("curl --cacert {}", cert.display());
    vec![
        "# allowed: the demo token (role operator) may read".to_owned(),
        format!("{curl} -H 'x-token: {token}' {base}/api/v1/metadata"),
        format!(
            "{curl} -H 'Authorization: Bearer {token}' {base}/api/configuration-service/v1/project/sockshop/resource/helm%2Fcarts.tgz"
        ),
        format!("{curl} --http2 -i -H 'x-token: {token}' {base}/api/v1/metadata"),
        "# refused: no token (401), a mistyped token (401), a write that needs admin (403)"
            .to_owned(),
        format!("{curl} -i {base}/api/v1/metadata"),
        format!(
            "{curl} -i -H 'x-token: {}' {base}/api/v1/metadata",
            mistyped(token)
        ),
        format!(
            "{curl} -i -X POST -H 'x-token: {token}' {base}/api/configuration-service/v1/project"
        ),
        "# public".to_owned(),
        format!("{curl} {base}/nginx-health"),
    ]
}

/// The token with its last character changed, so its checksum no longer matches.
fn mistyped(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = if *last == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
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
        "x_auth_roles": header("x-auth-roles"),
        "x_auth_method": header("x-auth-method"),
    });
    let mut response = Response::new(body::full(format!("{description:#}\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
