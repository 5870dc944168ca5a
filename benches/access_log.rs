//! Criterion benches for the access-log line, the naive alternative in the same run:
//! - `compact`: the hand-written JSON line ([`AccessFields::begin`] + [`PendingLine::finish`]),
//!   clock read included, as the request path now pays it;
//! - `compact_no_query`: the same for a request without a query (no redaction pass);
//! - `compact+queue`: the same plus the hand-over to the writer thread (which writes to a sink);
//! - `tracing_json_old_fields`: what the request path paid before, the `tracing` event with the
//!   old field set through `tracing-subscriber`'s JSON formatter (env filter included), written
//!   to a sink — the same formatting work, minus the `write(2)` per line it also did;
//! - `tracing_json_all_fields`: the same formatter with the new field set, for a like-for-like
//!   comparison.
//!
//! Run: `cargo bench --bench access_log` (add `-- --quick` for a short run).

#![allow(missing_docs)] // criterion_group! generates undocumented functions
#![allow(clippy::expect_used)] // a bench with a broken fixture should stop loudly

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::auth::AuthMethod;
use gatehouse::http::forwarded::RequestId;
use gatehouse::observe::access_log::AccessFields;
use gatehouse::observe::log_writer::AccessLog;
use http::{HeaderValue, Method};
use tracing_subscriber::EnvFilter;

fn fields<'a>(request_id: &'a RequestId, method: &'a Method) -> AccessFields<'a> {
    AccessFields {
        request_id,
        client_ip: "10.1.2.3",
        method: Some(method),
        path: Some("/api/configuration-service/v1/project/sockshop/resource"),
        query: Some("page=2&access_token=abc"),
        route: Some("/api/configuration-service"),
        upstream: Some("configuration-service"),
        status: 200,
        identity: Some("ci-bot"),
        auth_method: Some(AuthMethod::Token),
        duration: Duration::from_micros(1234),
        user_agent: Some(b"curl/8.5.0"),
        http: "1.1",
        tls: Some("1.3"),
    }
}

/// The bench's request id (a UUID a client sent) and method.
fn id_and_method() -> (RequestId, Method) {
    let id = HeaderValue::from_static("0193a5e2-7c1f-7d2e-9b3a-5f6e7d8c9b0a");
    let id = RequestId::from_client(&id).expect("a valid request id");
    (id, Method::GET)
}

fn compact(c: &mut Criterion) {
    let mut group = c.benchmark_group("access_log_line");
    let (id, method) = id_and_method();
    let f = fields(&id, &method);
    group.bench_function("compact", |b| {
        b.iter(|| {
            let line = black_box(&f)
                .begin(std::time::SystemTime::now())
                .finish(0, 4096);
            black_box(line)
        })
    });
    let plain = AccessFields {
        query: None,
        ..fields(&id, &method)
    };
    group.bench_function("compact_no_query", |b| {
        b.iter(|| {
            let line = black_box(&plain)
                .begin(std::time::SystemTime::now())
                .finish(0, 4096);
            black_box(line)
        })
    });
    let log = AccessLog::to_writer(Box::new(std::io::sink()));
    group.bench_function("compact+queue", |b| {
        b.iter(|| {
            let line = black_box(&f)
                .begin(std::time::SystemTime::now())
                .finish(0, 4096);
            log.send(line);
        })
    });
    group.finish();
    log.flush(Duration::from_secs(5));
    eprintln!("compact+queue: {} lines dropped", log.dropped());
}

fn tracing_json(c: &mut Criterion) {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let (id, method) = id_and_method();
    let f = fields(&id, &method);
    let path = f.path;
    // The tracing variants format the address per line, as the old log did.
    let client_ip = IpAddr::from([10, 1, 2, 3]);
    let mut group = c.benchmark_group("access_log_line");
    tracing::dispatcher::with_default(&dispatch, || {
        group.bench_function("tracing_json_old_fields", |b| {
            b.iter(|| {
                let f = black_box(&f);
                tracing::info!(
                    target: "gatehouse::access",
                    request_id = f.request_id.as_str(),
                    client_ip = %client_ip,
                    method = f.method.map(Method::as_str),
                    path,
                    route = f.route,
                    upstream = f.upstream,
                    identity = f.identity,
                    auth_method = f.auth_method.map(AuthMethod::as_str),
                    status = f.status,
                    duration_ms = f.duration.as_secs_f64() * 1000.0,
                );
            })
        });
        group.bench_function("tracing_json_all_fields", |b| {
            b.iter(|| {
                let f = black_box(&f);
                tracing::info!(
                    target: "gatehouse::access",
                    request_id = f.request_id.as_str(),
                    client_ip = %client_ip,
                    method = f.method.map(Method::as_str),
                    path,
                    route = f.route,
                    upstream = f.upstream,
                    identity = f.identity,
                    auth_method = f.auth_method.map(AuthMethod::as_str),
                    status = f.status,
                    duration_ms = f.duration.as_secs_f64() * 1000.0,
                    user_agent = f.user_agent.and_then(|ua| std::str::from_utf8(ua).ok()),
                    http = f.http,
                    tls = f.tls,
                    bytes_in = 0u64,
                    bytes_out = 4096u64,
                );
            })
        });
    });
    group.finish();
}

criterion_group!(benches, compact, tracing_json);
criterion_main!(benches);
