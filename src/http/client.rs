//! The one outbound HTTP(S) client builder, for the three places the gateway calls out: external
//! auth, the JWKS fetch and the upstream pools (which take only its [`connector`]). Each picks whom it trusts ([`Roots`]) and its pool
//! sizes; everything else — rustls with the ring provider and safe protocol versions, HTTP/1.1,
//! `TCP_NODELAY`, the connect timeout, tokio timers — is the same for all three.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// A pooled client that speaks plain HTTP or HTTPS, as each request's URI says.
pub(crate) type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// Whom an https connection trusts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Roots<'a> {
    /// The operating system's CA roots.
    System,
    /// The CA certificates in this PEM file (an upstream's `ca`).
    CaFile(&'a Path),
    /// Nobody: for a plain-http URL, where no certificate is ever checked.
    PlainOnly,
}

impl Roots<'_> {
    /// The system roots for an `https` URL; none for a plain-http one.
    pub(crate) fn system_for(url: &http::Uri) -> Self {
        if url.scheme() == Some(&http::uri::Scheme::HTTPS) {
            Self::System
        } else {
            Self::PlainOnly
        }
    }
}

/// Pool and timeout settings of one client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pool {
    /// TCP connect timeout.
    pub(crate) connect_timeout: Duration,
    /// How long an idle connection is kept; `None` keeps hyper-util's default (90 s).
    pub(crate) idle_timeout: Option<Duration>,
    /// Idle connections kept per host.
    pub(crate) max_idle_per_host: usize,
}

/// Builds a client. `what` names the setting in errors (`auth.external.url`, `upstream api`).
///
/// # Errors
/// `Roots::System` and the system has no CA roots, or `Roots::CaFile` and the file holds no
/// usable certificate.
pub(crate) fn build<B>(what: &str, roots: Roots<'_>, pool: Pool) -> Result<HttpsClient<B>, String>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let connector = connector(what, roots, pool.connect_timeout)?;
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_max_idle_per_host(pool.max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    if let Some(idle) = pool.idle_timeout {
        builder.pool_idle_timeout(idle);
    }
    Ok(builder.build(connector))
}

/// The connector alone: plain TCP or rustls trusting `roots`, as each URI's scheme says, with
/// `TCP_NODELAY` and the connect timeout. The upstream pools drive their connections themselves
/// (`proxy::pool`).
///
/// # Errors
/// As [`build`].
pub(crate) fn connector(
    what: &str,
    roots: Roots<'_>,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(what, roots)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// rustls (ring, safe default protocol versions, no client certificate) trusting `roots`.
fn tls_config(what: &str, roots: Roots<'_>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{what}: TLS setup failed: {e}"))?;
    let builder = match roots {
        Roots::System => builder
            .with_native_roots()
            .map_err(|e| format!("{what}: no system CA roots: {e}"))?,
        Roots::CaFile(ca) => builder.with_root_certificates(ca_roots(ca)?),
        Roots::PlainOnly => builder.with_root_certificates(rustls::RootCertStore::empty()),
    };
    Ok(builder.with_no_client_auth())
}

fn ca_roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::certs::load_chain(ca).map_err(|e| e.to_string())? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", ca.display()))?;
    }
    Ok(roots)
}
