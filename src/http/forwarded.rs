//! Who the client is and what upstreams are told about it: the client IP under the
//! `trusted_proxies` rule, `X-Forwarded-For/-Proto/-Host`, `X-Real-IP`, and `X-Request-Id`.
//!
//! The client IP is the peer address, or — only when the peer is a trusted proxy — the right-most
//! `X-Forwarded-For` entry that is not itself trusted. The same IP feeds logs, limits and audit.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use super::added::AddedHeaders;

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

/// A request's id: the client's `X-Request-Id` when it passes [`valid_request_id`], else 32
/// random hex characters. Either way only `[A-Za-z0-9._:-]`, so it goes into headers, JSON lines
/// and logs as it is, with nothing to escape.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A client's id, if it is valid.
    pub fn from_client(value: &HeaderValue) -> Option<Self> {
        valid_request_id(value.as_bytes()).then(|| Self(value.clone()))
    }

    /// As the `X-Request-Id` header value.
    pub fn header(&self) -> &HeaderValue {
        &self.0
    }

    /// As text.
    pub fn as_str(&self) -> &str {
        // Only `[A-Za-z0-9._:-]`: always visible ASCII.
        self.0.to_str().unwrap_or_default()
    }

    /// A new id: 32 random hex characters.
    pub(crate) fn generate() -> Self {
        let mut text = [0u8; 32];
        let random: u128 = rand::random();
        for (i, byte) in text.iter_mut().enumerate() {
            let nibble = (random >> (i * 4)) & 0xf;
            *byte = b"0123456789abcdef"[nibble as usize];
        }
        Self(HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0")))
    }
}

/// The request id: the client's if valid, else 32 random hex characters.
pub(crate) fn request_id(headers: &HeaderMap) -> RequestId {
    headers
        .get(&X_REQUEST_ID)
        .and_then(RequestId::from_client)
        .unwrap_or_else(RequestId::generate)
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

/// Sets `X-Forwarded-*`, `X-Real-IP` and `X-Request-Id` on an upstream request: the client's
/// values that do not stand are removed from `headers`, the gateway's go into `added`.
///
/// `X-Forwarded-For` is appended to only when the peer is trusted; otherwise whatever the client
/// sent is replaced, so an untrusted client cannot forge its address. `-Proto` and `-Host` from a
/// trusted proxy are kept (it terminated the client's connection); from anyone else they are set.
pub fn apply(headers: &mut HeaderMap, added: &mut AddedHeaders, fwd: &Forwarded<'_>) {
    let sent = Sent::of(headers);
    let xff = if fwd.peer_trusted && sent.xff {
        appended_xff(headers, fwd.peer.ip)
    } else {
        None
    };
    replace(headers, added, sent.xff, X_FORWARDED_FOR, || {
        xff.unwrap_or_else(|| fwd.peer.value.clone())
    });
    if !(fwd.peer_trusted && sent.proto) {
        replace(headers, added, sent.proto, X_FORWARDED_PROTO, || {
            HeaderValue::from_static(fwd.scheme)
        });
    }
    if !(fwd.peer_trusted && sent.host) {
        if sent.host {
            headers.remove(&X_FORWARDED_HOST);
        }
        if let Some(host) = fwd.host {
            added.push(X_FORWARDED_HOST, host.clone());
        }
    }
    replace(headers, added, sent.real_ip, X_REAL_IP, || {
        if fwd.client_ip == fwd.peer.ip {
            fwd.peer.value.clone()
        } else {
            HeaderValue::from(IpValue(fwd.client_ip))
        }
    });
    replace(headers, added, sent.request_id, X_REQUEST_ID, || {
        fwd.request_id.clone()
    });
}

/// Sets `name` to `value()`: the client's values go (when it `sent` any), the gateway's is added.
fn replace(
    headers: &mut HeaderMap,
    added: &mut AddedHeaders,
    sent: bool,
    name: HeaderName,
    value: impl FnOnce() -> HeaderValue,
) {
    if sent {
        headers.remove(&name);
    }
    added.push(name, value());
}

/// Which of the forwarded headers the client sent, found in one pass over the names instead of
/// a hash lookup for each (most clients send none of them).
#[derive(Debug, Default)]
struct Sent {
    xff: bool,
    proto: bool,
    host: bool,
    real_ip: bool,
    request_id: bool,
}

impl Sent {
    fn of(headers: &HeaderMap) -> Self {
        let mut sent = Self::default();
        for name in headers.keys() {
            let name = name.as_str();
            // All five start with `x-` and are 9 to 17 bytes long; the standard names (`host`,
            // `accept`) are turned away by the first test.
            if !(9..=17).contains(&name.len()) || !name.starts_with("x-") {
                continue;
            }
            match name {
                "x-forwarded-for" => sent.xff = true,
                "x-forwarded-proto" => sent.proto = true,
                "x-forwarded-host" => sent.host = true,
                "x-real-ip" => sent.real_ip = true,
                "x-request-id" => sent.request_id = true,
                _ => {}
            }
        }
        sent
    }
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
        assert_eq!(generated.as_str().len(), 32);
        assert!(valid_request_id(generated.header().as_bytes()));
        let mut sent = HeaderMap::new();
        sent.insert(X_REQUEST_ID, HeaderValue::from_static("a\"b"));
        assert_ne!(
            request_id(&sent).as_str(),
            "a\"b",
            "an invalid id is replaced"
        );
        sent.insert(X_REQUEST_ID, HeaderValue::from_static("trace-1.2:3_x"));
        assert_eq!(request_id(&sent).as_str(), "trace-1.2:3_x");
    }

    #[test]
    fn a_peer_is_canonical_in_its_header_value() {
        let mapped = PeerIp::new(ip("::ffff:10.0.0.1"));
        assert_eq!(mapped.ip(), ip("10.0.0.1"));
        assert_eq!(mapped.value, "10.0.0.1");
        assert_eq!(PeerIp::new(ip("2001:db8::1")).value, "2001:db8::1");
    }

    /// `apply` on a copy of `map`: the map's headers, then the added ones, as the upstream
    /// gets them.
    fn applied(map: &HeaderMap, fwd: &Forwarded<'_>) -> Vec<(String, String)> {
        let mut map = map.clone();
        let mut added = AddedHeaders::default();
        apply(&mut map, &mut added, fwd);
        map.iter()
            .chain(added.as_slice().iter().map(|(n, v)| (n, v)))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    fn values<'a>(sent: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        sent.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
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
        let sent = applied(&headers("1.2.3.4"), &fwd);
        assert_eq!(values(&sent, "x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(values(&sent, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&sent, "x-forwarded-host"), ["gw.example"]);
        assert_eq!(values(&sent, "x-real-ip"), ["127.0.0.1"]);
        assert_eq!(values(&sent, "x-request-id"), ["rid"]);
        fwd.peer_trusted = true;
        fwd.client_ip = ip("1.2.3.4");
        let sent = applied(&headers("1.2.3.4"), &fwd);
        assert_eq!(values(&sent, "x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
        assert_eq!(values(&sent, "x-real-ip"), ["1.2.3.4"]);
    }

    #[test]
    fn every_client_value_is_replaced_unless_a_trusted_proxy_may_set_it() {
        let id = HeaderValue::from_static("rid");
        let peer = PeerIp::new(ip("10.0.0.1"));
        let mut client = HeaderMap::new();
        for (name, value) in [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil.example"),
            ("x-real-ip", "6.6.6.6"),
            ("x-request-id", "forged"),
            ("x-kept", "yes"),
        ] {
            client.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        client.append(X_FORWARDED_FOR, HeaderValue::from_static("7.7.7.7"));
        let mut fwd = Forwarded {
            peer: &peer,
            peer_trusted: false,
            client_ip: ip("10.0.0.1"),
            scheme: "https",
            host: None,
            request_id: &id,
        };
        let sent = applied(&client, &fwd);
        assert_eq!(values(&sent, "x-forwarded-for"), ["10.0.0.1"]);
        assert_eq!(values(&sent, "x-forwarded-proto"), ["https"]);
        assert!(values(&sent, "x-forwarded-host").is_empty());
        assert_eq!(values(&sent, "x-real-ip"), ["10.0.0.1"]);
        assert_eq!(values(&sent, "x-request-id"), ["rid"]);
        assert_eq!(values(&sent, "x-kept"), ["yes"]);
        fwd.peer_trusted = true;
        fwd.client_ip = ip("7.7.7.7");
        let sent = applied(&client, &fwd);
        assert_eq!(
            values(&sent, "x-forwarded-for"),
            ["6.6.6.6, 7.7.7.7, 10.0.0.1"]
        );
        assert_eq!(values(&sent, "x-forwarded-proto"), ["gopher"]);
        assert_eq!(values(&sent, "x-forwarded-host"), ["evil.example"]);
        assert_eq!(values(&sent, "x-real-ip"), ["7.7.7.7"]);
        assert_eq!(values(&sent, "x-request-id"), ["rid"]);
    }
}
