//! A client for the gateway: rustls trusting the test CA, one fresh connection per request,
//! HTTP/1.1 or h2 chosen by ALPN; plus plain-TCP HTTP/1.1 for the admin and plain listeners.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Body, certs, empty, within};

/// The ring provider, named explicitly so no process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting the test CA, offering `alpn` and only `versions`.
pub fn tls_config(
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(certs().ca_der.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client config trusting exactly the given certificates (e.g. a generated self-signed one).
pub fn tls_config_trusting(roots_der: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for der in roots_der {
        roots.add(der.clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A client config that accepts any server certificate (signatures are still checked), for
/// looking at a certificate the test does not know in advance.
pub fn tls_config_accept_any() -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens TCP to `addr` and runs a TLS handshake with SNI/verification name `server_name`.
pub async fn connect_tls(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config).connect(name, tcp).await
}

/// A collected response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// Collects `resp`'s body (bounded).
    pub async fn collect(resp: Response<Incoming>) -> Resp {
        let (parts, body) = resp.into_parts();
        let body = within("response body", body.collect())
            .await
            .expect("response body")
            .to_bytes();
        Resp {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }

    /// The header's value as text, if present (first one).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header value is text"))
    }

    /// The body as UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("body is UTF-8")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// Checks this is a gateway error (`status`, JSON `{"error", "request_id"}`,
    /// `content-type: application/json`, `request_id` equal to `x-request-id`) and returns the
    /// `error` text.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "status; body: {:?}",
            String::from_utf8_lossy(&self.body)
        );
        let content_type = self.header(CONTENT_TYPE.as_str()).unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error content-type is {content_type:?}"
        );
        let json = self.json();
        let request_id = json["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("error body has no request_id: {json}"));
        assert_eq!(
            Some(request_id),
            self.header("x-request-id"),
            "JSON request_id equals the x-request-id header"
        );
        json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("error body has no error text: {json}"))
            .to_owned()
    }
}

/// Which HTTP version a [`Client`] negotiates by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// What the last handshake negotiated, for tests that look at the TLS session.
#[derive(Clone, Debug, Default)]
pub struct SessionInfo {
    pub alpn: Option<Vec<u8>>,
    pub peer_cert: Option<CertificateDer<'static>>,
    pub version: Option<rustls::ProtocolVersion>,
}

/// An HTTPS client for one gateway address. Each request uses a fresh connection, so requests
/// are independent and connection reuse never hides a bug.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    server_name: String,
    config: Arc<ClientConfig>,
    proto: Proto,
    last: Arc<Mutex<SessionInfo>>,
}

impl Client {
    /// HTTP/1.1 (ALPN `http/1.1`) to `addr`, SNI `localhost`.
    pub fn h1(addr: SocketAddr) -> Client {
        Client::new(
            addr,
            Proto::H1,
            tls_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
        )
    }

    /// HTTP/2 (ALPN `h2`) to `addr`, SNI `localhost`.
    pub fn h2(addr: SocketAddr) -> Client {
        Client::new(addr, Proto::H2, tls_config(&[b"h2"], rustls::ALL_VERSIONS))
    }

    /// A client with its own TLS config.
    pub fn new(addr: SocketAddr, proto: Proto, config: Arc<ClientConfig>) -> Client {
        Client {
            addr,
            server_name: "localhost".to_owned(),
            config,
            proto,
            last: Arc::default(),
        }
    }

    /// Uses `name` for SNI and certificate verification.
    pub fn with_server_name(mut self, name: &str) -> Client {
        name.clone_into(&mut self.server_name);
        self
    }

    /// The `Host`/`:authority` sent when a request names none: `localhost:PORT`.
    pub fn authority(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// What the most recent handshake negotiated.
    pub fn last_session(&self) -> SessionInfo {
        self.last.lock().unwrap().clone()
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Request::get(path).body(empty()).unwrap()).await
    }

    /// Sends `req` and collects the response.
    pub async fn send(&self, req: Request<Body>) -> Resp {
        Resp::collect(self.send_streaming(req).await).await
    }

    /// Sends `req` and returns as soon as the response head arrives; the body streams.
    pub async fn send_streaming(&self, req: Request<Body>) -> Response<Incoming> {
        self.try_send_streaming(req)
            .await
            .unwrap_or_else(|e| panic!("request to gateway failed: {e:#}"))
    }

    /// Like [`Client::send_streaming`], but a failed connection or exchange is an `Err`.
    pub async fn try_send_streaming(
        &self,
        req: Request<Body>,
    ) -> anyhow::Result<Response<Incoming>> {
        let tls = within(
            "TLS connect to gateway",
            connect_tls(self.addr, &self.server_name, self.config.clone()),
        )
        .await?;
        {
            let (_, conn) = tls.get_ref();
            *self.last.lock().unwrap() = SessionInfo {
                alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                peer_cert: conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.clone().into_owned()),
                version: conn.protocol_version(),
            };
        }
        let req = match self.proto {
            Proto::H1 => origin_form(req, &self.authority()),
            Proto::H2 => absolute_form(req, &self.authority()),
        };
        Ok(within("gateway response head", send_on(tls, self.proto, req)).await?)
    }
}

/// Sends one request on `io` using `proto`; the connection task is spawned.
pub async fn send_on<IO>(
    io: IO,
    proto: Proto,
    req: Request<Body>,
) -> hyper::Result<Response<Incoming>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match proto {
        Proto::H1 => {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender.send_request(req).await
        }
        Proto::H2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                    .await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender.send_request(req).await
        }
    }
}

/// HTTP/1.1: the URI becomes path+query and the authority (if any) moves to `Host`.
fn origin_form(mut req: Request<Body>, default_authority: &str) -> Request<Body> {
    let uri = req.uri().clone();
    if let Some(authority) = uri.authority() {
        req.headers_mut()
            .insert(HOST, authority.as_str().parse().unwrap());
    } else if !req.headers().contains_key(HOST) {
        req.headers_mut()
            .insert(HOST, default_authority.parse().unwrap());
    }
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
    req
}

/// HTTP/2: the URI becomes absolute (`:authority` from the URI, else `Host`, else the default)
/// and `Host` is dropped.
fn absolute_form(mut req: Request<Body>, default_authority: &str) -> Request<Body> {
    let host = req.headers_mut().remove(HOST);
    let uri = req.uri().clone();
    let authority: Authority = match (uri.authority(), host) {
        (Some(a), _) => a.clone(),
        (None, Some(h)) => h.to_str().unwrap().parse().unwrap(),
        (None, None) => default_authority.parse().unwrap(),
    };
    let mut parts = uri.into_parts();
    parts.scheme = Some(Scheme::HTTPS);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts).unwrap();
    *req.version_mut() = Version::HTTP_2;
    req
}

/// Plain-TCP HTTP/1.1 to `addr` (admin and plain listeners); `Host` defaults to
/// `localhost:PORT`.
pub async fn send_plain(addr: SocketAddr, req: Request<Body>) -> Resp {
    let tcp = within("TCP connect", TcpStream::connect(addr))
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let req = origin_form(req, &format!("localhost:{}", addr.port()));
    let resp = within("plain response head", send_on(tcp, Proto::H1, req))
        .await
        .unwrap_or_else(|e| panic!("plain request to {addr}: {e}"));
    Resp::collect(resp).await
}

/// `GET path` over plain HTTP/1.1.
pub async fn get_plain(addr: SocketAddr, path: &str) -> Resp {
    send_plain(addr, Request::get(path).body(empty()).unwrap()).await
}
