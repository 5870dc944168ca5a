//! The CSRF rule for cookie-authenticated requests. A browser attaches the session cookie to a
//! request another site triggers (`SameSite=Strict` stops that in current browsers, but not in
//! old ones, nor from a sibling subdomain, which counts as same-site), so a write carried by the
//! cookie alone must prove it comes from the gateway's own pages:
//!
//! - `Origin` present: it must be the request's own origin — the listener's scheme plus the
//!   `Host` the request was sent to (default ports folded: `https://gw` = `https://gw:443`);
//! - `Origin` absent: `Sec-Fetch-Site: same-origin` is required.
//!
//! Login is looser — it carries its own proof, the token — but still refuses a request that says
//! it comes from elsewhere (a foreign `Origin`, or `Sec-Fetch-Site` other than `same-origin` or
//! `none`), so another site cannot log a browser into the attacker's account. A client that sends
//! neither header (curl, a script) may log in.

use http::{HeaderMap, HeaderName, header};

/// `Sec-Fetch-Site` (Fetch Metadata).
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Where the request arrived: the listener's scheme and the `Host` (with port, as sent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// `https` or `http`.
    pub(crate) scheme: &'a str,
    /// `Host` or `:authority`.
    pub(crate) host: Option<&'a str>,
}

/// Whether a cookie-authenticated write may proceed.
pub(crate) fn write_allowed(headers: &HeaderMap, target: Target<'_>) -> bool {
    match headers.get(header::ORIGIN) {
        Some(origin) => origin
            .to_str()
            .is_ok_and(|origin| same_origin(origin, target)),
        None => fetch_site(headers) == Some("same-origin"),
    }
}

/// Whether a login request may proceed (see the module doc).
pub(crate) fn login_allowed(headers: &HeaderMap, target: Target<'_>) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin
            .to_str()
            .is_ok_and(|origin| same_origin(origin, target));
    }
    match headers.get(SEC_FETCH_SITE) {
        None => true,
        Some(_) => matches!(fetch_site(headers), Some("same-origin" | "none")),
    }
}

fn fetch_site(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(SEC_FETCH_SITE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `origin` (`scheme://host[:port]`) equals the request's origin.
fn same_origin(origin: &str, target: Target<'_>) -> bool {
    let Some((scheme, authority)) = origin.trim().split_once("://") else {
        return false;
    };
    let Some(host) = target.host else {
        return false;
    };
    scheme.eq_ignore_ascii_case(target.scheme)
        && match (host_port(authority, scheme), host_port(host, target.scheme)) {
            (Some((a_host, a_port)), Some((b_host, b_port))) => {
                a_host.eq_ignore_ascii_case(b_host) && a_port == b_port
            }
            _ => false,
        }
}

/// Host and port of an authority, the scheme's default port when none is written. `None` for a
/// malformed one (a path, userinfo, a bad port).
fn host_port<'a>(authority: &'a str, scheme: &str) -> Option<(&'a str, u16)> {
    if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let (host, port) = match authority.rfind(':') {
        // A colon inside `[v6]` is part of the address, not a port separator.
        Some(at) if !authority[at..].contains(']') => {
            (&authority[..at], authority[at + 1..].parse().ok()?)
        }
        _ => (authority, default),
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const TARGET: Target<'static> = Target {
        scheme: "https",
        host: Some("gw.example:8443"),
    };

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn writes_need_the_same_origin_or_fetch_metadata() {
        for (pairs, allowed) in [
            (&[("origin", "https://gw.example:8443")][..], true),
            (&[("origin", "HTTPS://GW.example:8443")][..], true),
            (&[("origin", "https://evil.example")][..], false),
            (&[("origin", "http://gw.example:8443")][..], false),
            (&[("origin", "https://gw.example")][..], false),
            (&[("origin", "https://gw.example:8443.evil")][..], false),
            (&[("origin", "null")][..], false),
            (&[("sec-fetch-site", "same-origin")][..], true),
            (&[("sec-fetch-site", "same-site")][..], false),
            (&[("sec-fetch-site", "cross-site")][..], false),
            (&[][..], false),
            (
                &[
                    ("origin", "https://evil.example"),
                    ("sec-fetch-site", "same-origin"),
                ][..],
                false,
            ),
        ] {
            assert_eq!(write_allowed(&headers(pairs), TARGET), allowed, "{pairs:?}");
        }
    }

    #[test]
    fn default_ports_fold() {
        let target = Target {
            scheme: "https",
            host: Some("gw.example"),
        };
        assert!(write_allowed(
            &headers(&[("origin", "https://gw.example:443")]),
            target
        ));
        let v6 = Target {
            scheme: "https",
            host: Some("[::1]:8443"),
        };
        assert!(write_allowed(
            &headers(&[("origin", "https://[::1]:8443")]),
            v6
        ));
        assert!(!write_allowed(&headers(&[("origin", "https://[::1]")]), v6));
    }

    #[test]
    fn login_refuses_only_what_says_it_is_foreign() {
        for (pairs, allowed) in [
            (&[][..], true),
            (&[("origin", "https://gw.example:8443")][..], true),
            (&[("origin", "https://evil.example")][..], false),
            (&[("sec-fetch-site", "none")][..], true),
            (&[("sec-fetch-site", "same-origin")][..], true),
            (&[("sec-fetch-site", "cross-site")][..], false),
            (&[("sec-fetch-site", "same-site")][..], false),
        ] {
            assert_eq!(login_allowed(&headers(pairs), TARGET), allowed, "{pairs:?}");
        }
    }
}
