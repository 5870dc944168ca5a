//! What every step of a request shares: the connection it came on ([`ConnInfo`]) and the
//! request's own facts as they become known ([`RequestCtx`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::Request;

use crate::auth::AuthMethod;
use crate::http::counted::ByteCount;
use crate::http::forwarded::{self, PeerIp, RequestId};
use crate::ratelimit::RateHeaders;
use crate::runtime::Runtime;

/// What the server knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The TCP peer's address, with its header value for the forwarded headers.
    pub(crate) peer_ip: PeerIp,
    /// `"https"` on the TLS listener, `"http"` on the cleartext one.
    pub(crate) scheme: &'static str,
    /// On the cleartext listener in redirect mode: the TLS port to redirect to.
    pub(crate) redirect_to_port: Option<u16>,
    /// The identity of the client certificate verified at this connection's handshake.
    pub(crate) client_cert: Option<Arc<crate::tls::client_auth::ClientCert>>,
    /// The negotiated TLS version (`"1.3"`, `"1.2"`); `None` on the cleartext listener.
    pub(crate) tls_version: Option<&'static str>,
}

/// Per-request facts every step and the final log line share.
#[derive(Debug)]
pub(crate) struct RequestCtx {
    /// Kept from the client if valid, else generated; echoed in the response.
    pub(crate) request_id: RequestId,
    /// Whether the peer is a trusted proxy.
    pub(crate) peer_trusted: bool,
    /// The client IP under the trusted-proxy rule.
    pub(crate) client_ip: IpAddr,
    /// `"https"` or `"http"`.
    pub(crate) scheme: &'static str,
    /// When handling started.
    pub(crate) start: Instant,
    /// Index of the matched route.
    pub(crate) route: Option<usize>,
    /// Who the caller is and how they authenticated, once known.
    pub(crate) identity: Option<(Arc<str>, AuthMethod)>,
    /// `RateLimit-Policy` and `RateLimit` for the response, on rate-limited routes.
    pub(crate) rate_headers: Option<RateHeaders>,
    /// The upstream called and how long it took to answer with headers.
    pub(crate) upstream: Option<(Arc<str>, std::time::Duration)>,
    /// Request body bytes read by the proxy, once the body is forwarded.
    pub(crate) bytes_in: Option<ByteCount>,
}

impl RequestCtx {
    pub(super) fn new<B>(req: &Request<B>, conn: &ConnInfo, rt: &Runtime) -> Self {
        let peer = conn.peer_ip.ip();
        Self {
            request_id: forwarded::request_id(req.headers()),
            peer_trusted: rt.trusted_proxies.contains(peer),
            client_ip: rt.trusted_proxies.client_ip(peer, req.headers()),
            scheme: conn.scheme,
            start: Instant::now(),
            route: None,
            identity: None,
            rate_headers: None,
            upstream: None,
            bytes_in: None,
        }
    }

    pub(super) fn request_id_str(&self) -> &str {
        self.request_id.as_str()
    }
}
