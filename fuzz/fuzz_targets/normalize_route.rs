//! Arbitrary path → [`normalize_path`] → [`RouteTable::find`] → [`upstream_path`].
//!
//! Invariants checked on every normalised path: it starts with `/`, holds no `//` and no `.` or
//! `..` segment, normalising it again changes nothing, and it equals an independent byte-level
//! model of SPEC §4 (decode escapes of unreserved characters only, upper-case the hex of the
//! others, resolve dot segments, drop empty ones; every other byte kept as it was). Routing it
//! against a fixed table never panics, a matched route really matches, and the upstream path is
//! absolute.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use gatehouse::config::{Config, RouteAction};
use gatehouse::http::normalize::{PathError, normalize_path};
use gatehouse::router::{RouteTable, path_has_prefix, upstream_path};
use http::Method;
use libfuzzer_sys::fuzz_target;

/// A small table with every kind of route: exact, prefix, trailing-slash prefix, host-limited,
/// method-limited, strip_prefix and rewrite.
const ROUTES: &str = r#"
[tls]
self_signed_hosts = ["localhost"]

[[upstreams]]
name = "u"
targets = ["127.0.0.1:1"]

[[routes]]
path = "/"
exact = true
upstream = "u"

[[routes]]
path = "/api"
upstream = "u"
strip_prefix = true

[[routes]]
path = "/api"
exact = true
upstream = "u"

[[routes]]
path = "/api/configuration-service"
upstream = "u"
strip_prefix = true

[[routes]]
path = "/api/secrets/"
upstream = "u"
rewrite = "/v1/secrets/"

[[routes]]
path = "/admin"
host = "admin.example.com"
upstream = "u"

[[routes]]
path = "/write"
methods = ["POST"]
upstream = "u"

[[routes]]
path = "/write"
methods = ["GET"]
upstream = "u"
rewrite = "/w"

[[routes]]
path = "/%41b"
upstream = "u"
"#;

static CONFIG: LazyLock<Config> =
    LazyLock::new(
        || match gatehouse::config::parse(Path::new("/fuzz/gateway.toml"), ROUTES) {
            Ok(config) => config,
            Err(errors) => panic!("the harness's route table is invalid: {errors}"),
        },
    );
static TABLE: LazyLock<RouteTable> = LazyLock::new(|| RouteTable::new(&CONFIG.routes));


const HOSTS: [Option<&str>; 3] = [None, Some("admin.example.com"), Some("other.example.com")];

fn methods() -> [Method; 4] {
    [Method::GET, Method::HEAD, Method::POST, Method::DELETE]
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The model: SPEC §4 on bytes, written independently of `normalize.rs`.
fn model(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'%' {
            decoded.push(raw[i]);
            i += 1;
            continue;
        }
        let high = raw.get(i + 1).copied().and_then(hex);
        let low = raw.get(i + 2).copied().and_then(hex);
        let (Some(high), Some(low)) = (high, low) else {
            return Err(PathError::BadEscape);
        };
        let byte = high * 16 + low;
        if is_unreserved(byte) {
            decoded.push(byte);
        } else {
            decoded.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
        i += 3;
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut ends_in_directory = false;
    for segment in decoded.split(|b| *b == b'/').skip(1) {
        ends_in_directory = matches!(segment, b"" | b"." | b"..");
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for segment in segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() || ends_in_directory {
        out.push(b'/');
    }
    Ok(out)
}

fn check_normal(raw: &str, normal: &str) {
    assert!(
        normal.starts_with('/'),
        "{raw:?} → {normal:?}: not absolute"
    );
    assert!(
        !normal.contains("//"),
        "{raw:?} → {normal:?}: empty segment"
    );
    assert!(
        normal.split('/').all(|s| s != "." && s != ".."),
        "{raw:?} → {normal:?}: dot segment survived"
    );
    match normalize_path(normal) {
        Ok(again) => assert_eq!(again, normal, "{raw:?}: normalising twice changed it"),
        Err(e) => panic!("{raw:?} → {normal:?}: the normal form is refused ({e})"),
    }
}

fn check_route(path: &str) {
    for host in HOSTS {
        for method in methods() {
            let index = match TABLE.find(host, &method, path) {
                Ok(index) => index,
                // A miss (404, 405, or the 301 to a trailing-slash route) routes nowhere.
                Err(_) => continue,
            };
            let route = &CONFIG.routes[index];
            if route.exact {
                assert_eq!(path, route.path, "exact route {index} matched another path");
            } else {
                assert!(
                    path_has_prefix(path, &route.path),
                    "{path:?} routed to {index} ({:?}) off a segment boundary",
                    route.path
                );
            }
            if let RouteAction::Proxy(proxy) = &route.action {
                let upstream = upstream_path(
                    &route.path,
                    proxy.strip_prefix,
                    proxy.rewrite.as_deref(),
                    path,
                );
                assert!(
                    upstream.starts_with('/'),
                    "{path:?} via route {index}: upstream path {upstream:?} is not absolute"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Request paths reach the gateway as `&str` (the http crate checks UTF-8).
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let got = normalize_path(raw);
    let want = model(raw.as_bytes());
    match (&got, &want) {
        (Ok(normal), Ok(model)) => {
            assert!(
                normal.as_bytes() == model.as_slice(),
                "{raw:?}: normalised to {normal:?}, the model says {:?}",
                String::from_utf8_lossy(model)
            );
            check_normal(raw, normal);
            check_route(normal);
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "{raw:?}: different errors"),
        _ => panic!("{raw:?}: normalize_path says {got:?}, the model says {want:?}"),
    }
});
