//! The host a request names: `Host` on HTTP/1, `:authority` on HTTP/2.

use http::{HeaderValue, Request, header};

/// `Host` (HTTP/1) or `:authority` (HTTP/2), as sent, port included.
pub(super) fn host_with_port<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The host without port, for route matching.
pub(super) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    host_with_port(req).map(strip_port)
}

/// The `Host` the upstream's forwarded headers name: the client's `Host`, or on HTTP/2 the
/// `:authority` (which has no header of its own).
pub(super) fn upstream_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(ip, _)| ip);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        for (host, want) in [
            ("gw.example:8443", "gw.example"),
            ("gw.example", "gw.example"),
            ("[::1]:8443", "::1"),
            ("127.0.0.1:1", "127.0.0.1"),
        ] {
            assert_eq!(strip_port(host), want);
        }
    }
}
