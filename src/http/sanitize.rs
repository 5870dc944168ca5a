//! Request hygiene before routing: smuggling shapes (400), header size (431), duplicate `Host`,
//! and hop-by-hop header removal in both directions.
//!
//! hyper's HTTP/1 parser already refuses obsolete line folding, conflicting `Content-Length`s and
//! non-chunked `Transfer-Encoding` with 400, and it silently resolves `Content-Length` +
//! `Transfer-Encoding` in favour of chunked. gatehouse refuses that shape outright: the raw head
//! is inspected by [`super::head_scan`], whose verdict reaches here as a request extension.

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Version};

use crate::error::GatewayError;

/// Marks a request whose raw HTTP/1 head had a smuggling shape (set by the connection's scanner).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SmugglingShape(pub &'static str);

/// Refuses malformed or oversized requests.
///
/// # Errors
/// 400 for smuggling shapes and duplicate `Host`, 431 for headers over `max_header_bytes`.
pub(crate) fn check<B>(req: &Request<B>, max_header_bytes: usize) -> Result<(), GatewayError> {
    if let Some(SmugglingShape(reason)) = req.extensions().get::<SmugglingShape>() {
        return Err(GatewayError::BadRequest(reason));
    }
    let headers = req.headers();
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(GatewayError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(GatewayError::BadRequest("duplicate Content-Length"));
    }
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(GatewayError::BadRequest("duplicate Host"));
    }
    if req.version() == Version::HTTP_11 && !headers.contains_key(header::HOST) {
        return Err(GatewayError::BadRequest("missing Host"));
    }
    if header_bytes(headers) > max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    Ok(())
}

/// Bytes of header names and values, plus the `: ` and CRLF of each line.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction. `Connection`
/// first: [`remove_hop_by_hop`] also removes what it names.
static HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// How many names [`HOP_BY_HOP`] holds.
const HOP_COUNT: usize = 9;

/// Removes hop-by-hop headers and every header the `Connection` header names.
///
/// One pass over the names (a handful of enum compares each) finds which hop-by-hop headers are
/// there; only those are removed. Most requests carry none, and most upstream responses only
/// `Connection: keep-alive` (BENCHMARKS.md, "Per-request header work").
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; HOP_COUNT];
    for name in headers.keys() {
        if let Some(at) = hop_by_hop_index(name.as_str()) {
            present[at] = true;
        }
    }
    if present[0] {
        remove_connection_named(headers);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, here)| *here) {
        headers.remove(name);
    }
}

/// Where `name` (lowercase, as a `HeaderName` holds it) is in [`HOP_BY_HOP`]. A `match` on the
/// text dispatches on its length first, so a name of another length costs one compare and the
/// rest at most two string compares: this runs for every header in both directions, where a
/// search comparing against each of the nine `HeaderName`s was 2 % of an h2 request's
/// instructions (BENCHMARKS.md, "Per-request header work").
fn hop_by_hop_index(name: &str) -> Option<usize> {
    let at = match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    };
    debug_assert_eq!(HOP_BY_HOP[at].as_str(), name);
    Some(at)
}

/// Removes `Connection` and every header it names (by name as written: no `HeaderName` built).
/// Names that are hop-by-hop themselves (`keep-alive`, `upgrade` …) need no lookup: the caller
/// removes those it found. So the usual `Connection: keep-alive` costs no allocation and no
/// further search of the map.
fn remove_connection_named(headers: &mut HeaderMap) {
    let header::Entry::Occupied(connection) = headers.entry(header::CONNECTION) else {
        return;
    };
    let others: Vec<_> = connection
        .remove_entry_mult()
        .1
        .filter(|value| !names_only_hop_by_hop(value))
        .collect();
    let named = others
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','));
    for name in named {
        headers.remove(name.trim());
    }
}

/// Whether every name a `Connection` value lists is one of [`HOP_BY_HOP`]. The value nearly
/// every keep-alive upstream sends, `keep-alive`, is recognised whole before any parsing.
fn names_only_hop_by_hop(value: &http::HeaderValue) -> bool {
    if value.as_bytes().eq_ignore_ascii_case(b"keep-alive") {
        return true;
    }
    let Ok(text) = value.to_str() else {
        return false;
    };
    text.split(',').all(|name| {
        let name = name.trim();
        HOP_BY_HOP
            .iter()
            .any(|hop| hop.as_str().eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri("/x").header("host", "h");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn smuggling_shapes_are_bad_requests() {
        let both = request(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert!(matches!(
            check(&both, 65536),
            Err(GatewayError::BadRequest(_))
        ));
        let dup = request(&[("content-length", "5"), ("content-length", "5")]);
        assert!(matches!(
            check(&dup, 65536),
            Err(GatewayError::BadRequest(_))
        ));
        let mut flagged = request(&[]);
        flagged
            .extensions_mut()
            .insert(SmugglingShape("both Content-Length and Transfer-Encoding"));
        assert!(matches!(
            check(&flagged, 65536),
            Err(GatewayError::BadRequest(_))
        ));
        assert!(check(&request(&[("content-length", "5")]), 65536).is_ok());
    }

    #[test]
    fn oversized_headers_are_431() {
        let big = "x".repeat(2000);
        assert!(matches!(
            check(&request(&[("x-big", &big)]), 1024),
            Err(GatewayError::HeadersTooLarge)
        ));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn every_connection_value_and_any_spelling_of_a_named_header_goes() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static(" X-Foo ,keep-alive"),
        );
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("x-bar, bad name, ,"),
        );
        headers.insert("x-foo", HeaderValue::from_static("1"));
        headers.insert("x-bar", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn a_connection_value_naming_only_hop_by_hop_headers_still_removes_them() {
        for value in ["keep-alive", "Keep-Alive, Upgrade", " UPGRADE ,keep-alive"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONNECTION, HeaderValue::from_static(value));
            headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert("x-kept", HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut headers);
            let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
            assert_eq!(left, ["x-kept"], "Connection: {value}");
        }
    }

    #[test]
    fn each_hop_by_hop_header_goes_on_its_own() {
        for name in &HOP_BY_HOP {
            let mut headers = HeaderMap::new();
            headers.insert("x-kept", HeaderValue::from_static("1"));
            headers.insert(name.clone(), HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut headers);
            assert!(!headers.contains_key(name), "{name} was forwarded");
            assert!(headers.contains_key("x-kept"));
        }
    }

    #[test]
    fn the_name_match_agrees_with_the_list_and_nothing_else_matches() {
        for (at, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name.as_str()), Some(at), "{name}");
        }
        // Same lengths as hop-by-hop names, and near misses.
        for other in [
            "user-agent",
            "x-token",
            "x-request",
            "tf",
            "t",
            "",
            "connectio",
            "connections",
            "keep_alive",
            "upgrades",
            "proxy-authorizatio",
            "Connection",
        ] {
            assert_eq!(hop_by_hop_index(other), None, "{other}");
        }
    }

    #[test]
    fn connection_close_still_removes_a_header_of_that_name_and_keeps_the_rest() {
        // Only `keep-alive` takes the short path; `close` goes through the list as before.
        for value in ["close", "Close", "close, x-foo"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONNECTION, HeaderValue::from_static(value));
            headers.insert("close", HeaderValue::from_static("1"));
            headers.insert("x-foo", HeaderValue::from_static("1"));
            headers.insert("x-kept", HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut headers);
            assert!(!headers.contains_key("close"), "Connection: {value}");
            assert!(!headers.contains_key(header::CONNECTION));
            assert!(headers.contains_key("x-kept"));
            assert_eq!(headers.contains_key("x-foo"), !value.contains("x-foo"));
        }
    }
}
