//! Who the client is and what upstreams are told about it: the client IP under the
//! `trusted_proxies` rule, `X-Forwarded-For/-Proto/-Host`, `X-Real-IP`, and `X-Request-Id`.
//!
//! The client IP is the peer address, or — only when the peer is a trusted proxy — the right-most
//! `X-Forwarded-For` entry that is not itself trusted. The same IP feeds logs, limits and audit.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// `x-forwarded-for`
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `x-real-ip`
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `x-request-id`
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The peers whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// From the configured CIDRs.
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// True if `ip` is inside a trusted network (IPv4-mapped IPv6 addresses count as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client IP for a request from `peer` carrying `headers`.
    pub(crate) fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.nets.is_empty() || !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let Ok(text) = value.to_str() else {
                return client;
            };
            for entry in text.rsplit(',') {
                let Some(ip) = parse_forwarded_ip(entry) else {
                    return client;
                };
                client = ip;
                if !self.contains(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an IP, possibly `[v6]` or `v4:port`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let unbracketed = entry
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .map(|(ip, _)| ip);
    let candidate = unbracketed.or_else(|| entry.rsplit_once(':').map(|(ip, _)| ip))?;
    candidate.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// True for a client-supplied request id worth keeping: 1–128 of `[A-Za-z0-9._:-]`.
pub(crate) fn valid_request_id(value: &[u8]) -> bool {
    (1..=128).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The request id: the client's if valid, else 32 random hex characters.
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(value) if valid_request_id(value.as_bytes()) => value.clone(),
        _ => generate_request_id(),
    }
}

fn generate_request_id() -> HeaderValue {
    let mut text = [0u8; 32];
    let random: u128 = rand::random();
    for (i, byte) in text.iter_mut().enumerate() {
        let nibble = (random >> (i * 4)) & 0xf;
        *byte = b"0123456789abcdef"[nibble as usize];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// A connection's peer address in canonical form, with its header value built once for the
/// connection: every request on it sends the value in `X-Forwarded-For` and usually in
/// `X-Real-IP`, and formatting an address is a visible share of a small request's cost.
#[derive(Debug, Clone)]
pub struct PeerIp {
    ip: IpAddr,
    value: HeaderValue,
}

impl PeerIp {
    /// The peer `ip` (an IPv4-mapped IPv6 address is taken as IPv4).
    pub fn new(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        Self {
            value: HeaderValue::from(IpValue(ip)),
            ip,
        }
    }

    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        // Formatted from an address: always visible ASCII.
        self.value.to_str().unwrap_or_default()
    }
}

/// What the forwarded headers say about one request.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The TCP peer.
    pub peer: &'a PeerIp,
    /// Whether the peer is a trusted proxy.
    pub peer_trusted: bool,
    /// The client IP (see [`TrustedProxies::client_ip`]).
    pub client_ip: IpAddr,
    /// `"https"` or `"http"`, the scheme the client used to reach us.
    pub scheme: &'static str,
    /// The host the client asked for, if any.
    pub host: Option<&'a HeaderValue>,
    /// The request id.
    pub request_id: &'a HeaderValue,
}

/// Sets `X-Forwarded-*`, `X-Real-IP` and `X-Request-Id` on an upstream request.
///
/// `X-Forwarded-For` is appended to only when the peer is trusted; otherwise whatever the client
/// sent is replaced, so an untrusted client cannot forge its address. `-Proto` and `-Host` from a
/// trusted proxy are kept (it terminated the client's connection); from anyone else they are set.
pub fn apply(headers: &mut HeaderMap, fwd: &Forwarded<'_>) {
    let xff = if fwd.peer_trusted {
        appended_xff(headers, fwd.peer.ip)
    } else {
        None
    };
    headers.insert(
        X_FORWARDED_FOR,
        xff.unwrap_or_else(|| fwd.peer.value.clone()),
    );
    if !(fwd.peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(fwd.scheme));
    }
    if !(fwd.peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match fwd.host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    let real_ip = if fwd.client_ip == fwd.peer.ip {
        fwd.peer.value.clone()
    } else {
        HeaderValue::from(IpValue(fwd.client_ip))
    };
    headers.insert(X_REAL_IP, real_ip);
    headers.insert(X_REQUEST_ID, fwd.request_id.clone());
}

/// The existing `X-Forwarded-For` values joined, plus the peer.
fn appended_xff(headers: &HeaderMap, peer: IpAddr) -> Option<HeaderValue> {
    let mut joined = String::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let text = value.to_str().ok()?.trim();
        if !text.is_empty() {
            joined.push_str(text);
            joined.push_str(", ");
        }
    }
    if joined.is_empty() {
        return None;
    }
    joined.push_str(&peer.to_string());
    HeaderValue::from_str(&joined).ok()
}

struct IpValue(IpAddr);

impl From<IpValue> for HeaderValue {
    fn from(ip: IpValue) -> Self {
        HeaderValue::from_str(&ip.0.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(X_FORWARDED_FOR, HeaderValue::from_str(xff).unwrap());
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_xff_says() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(
            trusted.client_ip(ip("203.0.113.9"), &headers("1.2.3.4")),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_peer_yields_rightmost_untrusted_entry() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let got = trusted.client_ip(ip("10.0.0.1"), &headers("6.6.6.6, 198.51.100.7, 10.0.0.2"));
        assert_eq!(got, ip("198.51.100.7"));
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &headers("garbage")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn request_ids_are_kept_only_when_valid() {
        assert!(valid_request_id(b"abc-123_x.y:z"));
        for bad in [&b""[..], b"has space", b"semi;colon", &[b'a'; 129]] {
            assert!(!valid_request_id(bad));
        }
        let generated = request_id(&HeaderMap::new());
        assert_eq!(generated.len(), 32);
        assert!(valid_request_id(generated.as_bytes()));
    }

    #[test]
    fn a_peer_is_canonical_in_its_header_value() {
        let mapped = PeerIp::new(ip("::ffff:10.0.0.1"));
        assert_eq!(mapped.ip(), ip("10.0.0.1"));
        assert_eq!(mapped.value, "10.0.0.1");
        assert_eq!(PeerIp::new(ip("2001:db8::1")).value, "2001:db8::1");
    }

    #[test]
    fn apply_resets_xff_for_untrusted_and_appends_for_trusted() {
        let id = HeaderValue::from_static("rid");
        let host = HeaderValue::from_static("gw.example");
        let peer = PeerIp::new(ip("127.0.0.1"));
        let mut fwd = Forwarded {
            peer: &peer,
            peer_trusted: false,
            client_ip: ip("127.0.0.1"),
            scheme: "https",
            host: Some(&host),
            request_id: &id,
        };
        let mut map = headers("1.2.3.4");
        apply(&mut map, &fwd);
        assert_eq!(map[X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(map[X_FORWARDED_PROTO], "https");
        assert_eq!(map[X_FORWARDED_HOST], "gw.example");
        assert_eq!(map[X_REAL_IP], "127.0.0.1");
        fwd.peer_trusted = true;
        fwd.client_ip = ip("1.2.3.4");
        let mut map = headers("1.2.3.4");
        apply(&mut map, &fwd);
        assert_eq!(map[X_FORWARDED_FOR], "1.2.3.4, 127.0.0.1");
        assert_eq!(map[X_REAL_IP], "1.2.3.4");
    }
}
