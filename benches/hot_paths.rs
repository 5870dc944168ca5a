//! Criterion benches for the per-request hot paths: route matching over a Keptn-sized table,
//! path normalisation (already-normal paths borrow; dirty ones allocate once), and the upstream
//! header rewrite (identity headers stripped and set, forwarded headers) with the gateway's
//! headers beside the client's map, against inserting them into it and against copying the
//! headers into a fresh map.
//!
//! The upstream response head (`http::wire`) is parsed with the connection's header-name cache
//! warm, as on every reused connection, against the first response on a new connection, which
//! parses each name and remembers it (the naive path of parsing every name, plus the caching).
//!
//! Run: `cargo bench --bench hot_paths`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions
#![allow(clippy::expect_used)] // a bench with a broken fixture should stop loudly

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::http::normalize::normalize_path;
use gatehouse::router::RouteTable;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use gatehouse::auth::credentials::{set_identity_headers, strip_identity_headers};
use gatehouse::auth::{AuthMethod, Identity};
use gatehouse::http::added::AddedHeaders;
use gatehouse::http::forwarded::{self, Forwarded, PeerIp};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

fn keptn_routes() -> RouteTable {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/keptn.toml");
    let text = std::fs::read_to_string(&path).expect("examples/keptn.toml is readable");
    let config = gatehouse::config::parse(&path, &text).expect("examples/keptn.toml is valid");
    RouteTable::new(&config.routes)
}

fn routing(c: &mut Criterion) {
    let table = keptn_routes();
    let mut group = c.benchmark_group("router");
    for path in [
        "/api/configuration-service/v1/project/sockshop/resource",
        "/api/v1/metadata",
        "/nginx-health",
        "/nope",
    ] {
        group.bench_function(path, |b| {
            b.iter(|| table.find(Some("localhost"), &Method::GET, std::hint::black_box(path)))
        });
    }
    group.finish();
}

fn normalisation(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    for path in [
        "/api/configuration-service/v1/project/sockshop",
        "/api/./x/../configuration-service/%2e%2e/v1//p",
    ] {
        group.bench_function(path, |b| {
            b.iter(|| normalize_path(std::hint::black_box(path)))
        });
    }
    group.finish();
}

/// A browser-ish request head as it reaches the rewrite: ten headers, one spoofed identity.
fn client_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example.com"),
        ("user-agent", "keptn-cli/1.4.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip"),
        ("content-type", "application/json"),
        ("x-token", "not-forwarded-in-this-bench"),
        ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-auth-subject", "spoofed"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

/// The rewrite as the proxy does it: identity headers stripped, then the gateway's forwarded
/// and identity headers added beside the map.
fn rewrite(
    headers: &mut HeaderMap,
    identity: &Identity,
    peer: &PeerIp,
    request_id: &HeaderValue,
) -> AddedHeaders {
    strip_identity_headers(headers, &[]);
    let mut added = AddedHeaders::with_capacity(8);
    let host = headers.get(http::header::HOST).cloned();
    forwarded::apply(
        headers,
        &mut added,
        &Forwarded {
            peer,
            peer_trusted: false,
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            scheme: "https",
            host: host.as_ref(),
            request_id,
        },
    );
    set_identity_headers(&mut added, identity);
    added
}

fn header_rewrite(c: &mut Criterion) {
    let identity = Identity::new(
        Arc::from("ci-bot"),
        Arc::from(vec!["operator".to_owned()]),
        AuthMethod::Token,
        None,
    );
    let request_id = HeaderValue::from_static("4bf92f3577b34da6a3ce929d0e0e4736");
    let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    // Built once per connection, as the server does.
    let peer = PeerIp::new(client);
    let template = client_headers();
    let mut group = c.benchmark_group("header_rewrite");
    group.bench_function("added_beside_the_map", |b| {
        b.iter_batched(
            || template.clone(),
            |mut headers| {
                let added = rewrite(&mut headers, &identity, &peer, &request_id);
                (headers, added)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // The naive alternative the proxy used before: the gateway's headers inserted into the map
    // (what hyper's client still gets for requests with a body).
    group.bench_function("inserted_into_the_map", |b| {
        b.iter_batched(
            || template.clone(),
            |mut headers| {
                rewrite(&mut headers, &identity, &peer, &request_id).append_to(&mut headers);
                headers
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // The naive alternative: the peer's address formatted for every request.
    group.bench_function("peer_formatted_per_request", |b| {
        b.iter_batched(
            || template.clone(),
            |mut headers| {
                let added = rewrite(&mut headers, &identity, &PeerIp::new(client), &request_id);
                (headers, added)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("naive_copy_into_new_map", |b| {
        b.iter_batched(
            || template.clone(),
            |headers| {
                let mut fresh = HeaderMap::with_capacity(headers.len() + 6);
                for (name, value) in &headers {
                    fresh.append(name.clone(), value.clone());
                }
                rewrite(&mut fresh, &identity, &peer, &request_id).append_to(&mut fresh);
                fresh
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// What an NGINX upstream answers to a small GET.
const UPSTREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Mon, 07 Dec 2026 01:58:38 GMT\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
Connection: keep-alive\r\n\r\nok\n";

fn upstream_head(c: &mut Criterion) {
    use bytes::BytesMut;
    use gatehouse::http::wire::{self, NameCache};
    let parse = |names: &mut NameCache| {
        let mut buf = BytesMut::from(UPSTREAM_HEAD);
        let head = wire::parse_response_head(&mut buf, &Method::GET, names)
            .expect("the fixture parses")
            .expect("the fixture is complete");
        std::hint::black_box(head);
    };
    let mut group = c.benchmark_group("upstream_head");
    let mut warm = NameCache::default();
    group.bench_function("parse_reused_connection", |b| b.iter(|| parse(&mut warm)));
    group.bench_function("parse_first_on_connection", |b| {
        b.iter(|| parse(&mut NameCache::default()))
    });
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "api.example"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-real-ip", "203.0.113.9"),
        ("x-request-id", "0123456789abcdef0123456789abcdef"),
        ("x-auth-subject", "ci-bot"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let target = http::uri::PathAndQuery::from_static("/v1/metadata");
    let mut out = Vec::with_capacity(512);
    group.bench_function("encode_request_head", |b| {
        b.iter(|| {
            out.clear();
            wire::encode_request_head(&mut out, &Method::GET, &target, &headers, &[], None);
            std::hint::black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    routing,
    normalisation,
    header_rewrite,
    upstream_head
);
criterion_main!(benches);
