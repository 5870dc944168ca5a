//! The gateway under test, started in-process from a config written into a temp dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gatehouse::server::Gateway;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::client::{connect_tls, get_plain, tls_config};
use super::raw::{RawResponse, exchange};
use super::{Client, Resp, Ws, certs, within};

/// Prepended unless the test writes its own `[server]`.
pub const DEFAULT_SERVER: &str =
    "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";

/// Prepended unless the test writes its own `[tls]`; the files are the test CA's leaf.
pub const DEFAULT_TLS: &str = "[tls]\ncert = \"certs/tls.crt\"\nkey = \"certs/tls.key\"\n";

/// A running gateway and the temp dir holding its config and certificates
/// (`certs/tls.{crt,key}` for `localhost`/`127.0.0.1`, `certs/sni.{crt,key}` for
/// [`super::SNI_HOST`], `certs/ca.crt`).
pub struct TestGateway {
    pub https: SocketAddr,
    pub plain: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub dir: TempDir,
    gateway: Option<Gateway>,
}

impl TestGateway {
    /// Writes `gateway.toml` (the body, after [`DEFAULT_SERVER`] and [`DEFAULT_TLS`] unless it
    /// has its own `[server]` / `[tls]`) and starts the gateway; panics if it fails to start.
    pub async fn start(toml_body: &str) -> TestGateway {
        match TestGateway::try_start(toml_body).await {
            Ok(gateway) => gateway,
            Err((e, config)) => {
                panic!("gateway failed to start: {e:#}\n--- gateway.toml ---\n{config}")
            }
        }
    }

    /// Like [`TestGateway::start`], returning the error and the config text on failure.
    pub async fn try_start(toml_body: &str) -> Result<TestGateway, (anyhow::Error, String)> {
        let dir = tempfile::tempdir().unwrap();
        certs().write_into(dir.path());
        let config = compose_config(toml_body);
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, &config).unwrap();
        TestGateway::try_start_in(dir, &path)
            .await
            .map_err(|e| (e, config))
    }

    /// Starts from a folder the test laid out itself, with the config at `config` (which may
    /// be a symlink); panics if it fails to start.
    pub async fn start_in(dir: TempDir, config: &Path) -> TestGateway {
        TestGateway::try_start_in(dir, config)
            .await
            .unwrap_or_else(|e| panic!("gateway failed to start from {}: {e:#}", config.display()))
    }

    async fn try_start_in(dir: TempDir, config: &Path) -> anyhow::Result<TestGateway> {
        let gateway = within("Gateway::start", Gateway::start(config)).await?;
        Ok(TestGateway {
            https: gateway.https_addr(),
            plain: gateway.plain_addr(),
            admin: gateway.admin_addr(),
            dir,
            gateway: Some(gateway),
        })
    }

    /// The running gateway (reload status, in-process reload).
    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("gateway running")
    }

    /// A file under the temp dir.
    pub fn file(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// An HTTP/1.1 client for the TLS listener.
    pub fn client(&self) -> Client {
        Client::h1(self.https)
    }

    /// An h2 client for the TLS listener.
    pub fn h2_client(&self) -> Client {
        Client::h2(self.https)
    }

    /// `GET path` over HTTPS/1.1.
    pub async fn get(&self, path: &str) -> Resp {
        self.client().get(path).await
    }

    /// `GET path` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Resp {
        get_plain(self.admin.expect("admin listener configured"), path).await
    }

    /// A TLS connection (ALPN `http/1.1`, SNI `localhost`) for hand-written HTTP/1.1.
    pub async fn raw_tls(&self) -> TlsStream<TcpStream> {
        within(
            "raw TLS connect",
            connect_tls(
                self.https,
                "localhost",
                tls_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
            ),
        )
        .await
        .unwrap()
    }

    /// Sends `request` bytes on a fresh TLS connection and reads everything until the gateway
    /// closes it (bounded).
    pub async fn raw_exchange(&self, request: &[u8]) -> RawResponse {
        let mut tls = self.raw_tls().await;
        exchange(&mut tls, request).await
    }

    /// `GET path` written by hand (the path goes on the wire exactly as given), with
    /// `Connection: close`.
    pub async fn raw_get(&self, path: &str) -> RawResponse {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            self.https.port()
        );
        self.raw_exchange(request.as_bytes()).await
    }

    /// A WebSocket handshake to `wss://localhost:PORT{path}` over a fresh TLS connection, with
    /// `Origin: origin` if given. A refused handshake is `Err(Error::Http(response))`.
    pub async fn websocket(
        &self,
        path: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let tls = self.raw_tls().await;
        let mut request = format!("wss://localhost:{}{path}", self.https.port())
            .into_client_request()
            .unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        within("WebSocket handshake", client_async(request, tls))
            .await
            .map(|(ws, _response)| ws)
    }

    /// Starts draining, as SIGTERM does.
    pub fn shutdown(&self) {
        self.gateway.as_ref().expect("gateway running").shutdown();
    }

    /// Resolves when the gateway has stopped.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        self.gateway.take().expect("gateway running").wait().await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(gateway) = &self.gateway {
            gateway.shutdown();
        }
    }
}

fn has_table(toml: &str, table: &str) -> bool {
    toml.lines().any(|line| line.trim() == table)
}

/// The `gateway.toml` [`TestGateway::start`] writes for `body`.
pub fn compose_config(body: &str) -> String {
    let mut config = String::new();
    if !has_table(body, "[server]") {
        config.push_str(DEFAULT_SERVER);
        config.push('\n');
    }
    if !has_table(body, "[tls]") {
        config.push_str(DEFAULT_TLS);
        config.push('\n');
    }
    config.push_str(body);
    config
}
