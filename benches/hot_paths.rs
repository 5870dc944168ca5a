//! Criterion benches for the per-request hot paths: route matching over a Keptn-sized table and
//! path normalisation (already-normal paths borrow; dirty ones allocate once).
//!
//! Run: `cargo bench --bench hot_paths`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions
#![allow(clippy::expect_used)] // a bench with a broken fixture should stop loudly

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::http::normalize::normalize_path;
use gatehouse::router::RouteTable;
use http::Method;

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

criterion_group!(benches, routing, normalisation);
criterion_main!(benches);
