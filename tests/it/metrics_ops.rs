//! The operator's metrics on the real `/metrics` (issue 12 item 3): the exposition parses, every
//! series has a family and no two series collide; certificate expiry equals what a handshake is
//! served and follows a reload; external auth latency and cache hits and misses, auth failures
//! by route, the last successful reload (which a failed reload must not move), build info and
//! `process_*`. And the Grafana dashboard queries only series the gateway exports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Request};

use crate::support::auth::{Answer, Scripted};
use crate::support::client::{Proto, tls_config_accept_any};
use crate::support::{Client, SNI_HOST, TestGateway, Upstream, empty, upstream_toml};

/// One sample line of the exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed `/metrics` text.
#[derive(Debug)]
struct Exposition {
    /// Family name → `# TYPE`.
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format strictly: every family has `# HELP` and `# TYPE`, every sample
    /// belongs to a declared family, and no series (name plus labels) appears twice.
    fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        let mut helps = BTreeSet::new();
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(helps.insert(name.to_owned()), "two HELP lines for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helps.contains(name), "TYPE before HELP for {name}");
                let old = types.insert(name.to_owned(), kind.to_owned());
                assert!(old.is_none(), "two TYPE lines for {name}");
            } else {
                assert!(!line.starts_with('#'), "unexpected comment {line:?}");
                samples.push(parse_sample(line));
            }
        }
        let exposition = Exposition { types, samples };
        let mut seen = BTreeSet::new();
        for sample in &exposition.samples {
            assert!(
                exposition.family_of(&sample.name).is_some(),
                "{} has no # TYPE family",
                sample.name
            );
            assert!(
                seen.insert((sample.name.clone(), sample.labels.clone())),
                "series {} {:?} appears twice",
                sample.name,
                sample.labels
            );
        }
        exposition
    }

    /// The declared family a sample name belongs to (histograms own `_bucket/_sum/_count`).
    fn family_of(&self, name: &str) -> Option<&str> {
        if let Some((family, _)) = self.types.get_key_value(name) {
            return Some(family);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            let (family, kind) = self.types.get_key_value(base)?;
            (kind == "histogram").then_some(family.as_str())
        })
    }

    /// The value of the series with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Like [`Self::value`], panicking with the series when it is missing.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no series {name} {labels:?} in {:#?}", self.samples))
    }

    /// Every sample of `name`.
    fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

/// `name{a="x",b="y"} value` or `name value`.
fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let value = match value {
        "+Inf" => f64::INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let Some((name, labels)) = series.split_once('{') else {
        return Sample {
            name: series.to_owned(),
            labels: BTreeMap::new(),
            value,
        };
    };
    let mut parsed = BTreeMap::new();
    let mut rest = labels.strip_suffix('}').unwrap();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap();
        let mut text = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => text.push('\n'),
                    Some((_, c)) => text.push(c),
                    None => panic!("dangling escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => text.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            parsed.insert(key.to_owned(), text).is_none(),
            "label {key} twice in {line:?}"
        );
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    Sample {
        name: name.to_owned(),
        labels: parsed,
        value,
    }
}

async fn scrape(gw: &TestGateway) -> Exposition {
    let resp = gw.admin_get("/metrics").await;
    assert_eq!(resp.status, 200);
    Exposition::parse(&resp.text())
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The `notAfter` of a DER certificate, as Unix seconds.
fn not_after(der: &[u8]) -> f64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.validity().not_after.timestamp() as f64
}

/// The certificate a handshake with `server_name` is served (whatever signed it).
async fn served_cert(gw: &TestGateway, server_name: &str) -> Vec<u8> {
    let client =
        Client::new(gw.https, Proto::H1, tls_config_accept_any()).with_server_name(server_name);
    client.get("/nginx-health").await;
    client.last_session().peer_cert.unwrap().to_vec()
}

/// keptn.toml's shape: an exact `/api` redirect and an `/api` prefix behind external auth
/// (caching allows and denials), a static route, the default certificate plus one `[[tls.sni]]`
/// host. Files are not watched: the tests reload explicitly.
async fn ops_gateway(auth: &Scripted) -> (TestGateway, Upstream) {
    let up = Upstream::text("api ok").await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nwatch_files = false\n\n\
         [tls]\ncert = \"certs/tls.crt\"\nkey = \"certs/tls.key\"\n\n\
         [[tls.sni]]\nhosts = [\"{SNI_HOST}\"]\ncert = \"certs/sni.crt\"\nkey = \"certs/sni.key\"\n\n\
         [auth]\ntoken_headers = [\"x-token\"]\n\n\
         [auth.external]\nurl = \"{}\"\nmethod = \"POST\"\nforward_headers = [\"x-token\"]\n\
         timeout = \"5s\"\ncache_ttl = \"60s\"\nnegative_cache_ttl = \"60s\"\n{}\
         \n[[routes]]\npath = \"/api\"\nexact = true\nredirect = \"/api/swagger-ui/\"\n\
         \n[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nstrip_prefix = true\nauth = [\"external\"]\n\
         \n[[routes]]\npath = \"/nginx-health\"\nrespond = {{ status = 200, body = \"OK\\n\" }}\n",
        auth.url("/v1/auth"),
        upstream_toml("api-service", &[up.addr], ""),
    );
    (TestGateway::start(&config).await, up)
}

async fn get_with_token(gw: &TestGateway, path: &str, token: &str) -> u16 {
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("x-token", token)
        .body(empty())
        .unwrap();
    gw.client().send(request).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_auth_cache_latency_and_failures_move_with_real_traffic() {
    let auth = Scripted::start(Answer::status(200)).await;
    let (gw, up) = ops_gateway(&auth).await;
    let before = scrape(&gw).await;
    assert_eq!(
        before.get("gatehouse_auth_cache_total", &[("result", "hit")]),
        0.0
    );
    assert_eq!(
        before.get("gatehouse_auth_cache_total", &[("result", "miss")]),
        0.0
    );
    assert_eq!(
        before.get("gatehouse_auth_service_duration_seconds_count", &[]),
        0.0
    );
    assert!(before.series("gatehouse_auth_failures_total").is_empty());

    assert_eq!(gw.get("/api").await.status, 308);
    assert_eq!(get_with_token(&gw, "/api/v1/project", "good").await, 200);
    assert_eq!(get_with_token(&gw, "/api/v1/project", "good").await, 200);
    auth.answer(Answer::status(401));
    assert_eq!(get_with_token(&gw, "/api/v1/project", "wrong").await, 401);
    assert_eq!(get_with_token(&gw, "/api/v1/project", "wrong").await, 401);
    assert_eq!(
        auth.calls(),
        2,
        "the second of each pair came from the cache"
    );
    assert_eq!(up.count(), 2, "denied requests never reached the upstream");

    let after = scrape(&gw).await;
    // The exact redirect and the prefix proxy share `path = "/api"` but not a series.
    let requests = |route, status| {
        after.value(
            "gatehouse_requests_total",
            &[("route", route), ("method", "GET"), ("status", status)],
        )
    };
    assert_eq!(requests("/api (exact)", "308"), Some(1.0));
    assert_eq!(requests("/api", "200"), Some(2.0));
    assert_eq!(requests("/api", "401"), Some(2.0));
    assert_eq!(
        requests("/api", "308"),
        None,
        "the redirect is not the proxy's"
    );
    assert_eq!(
        after.get(
            "gatehouse_request_duration_seconds_count",
            &[("route", "/api (exact)")]
        ),
        1.0
    );
    assert_eq!(
        after.get(
            "gatehouse_auth_failures_total",
            &[("route", "/api"), ("reason", "external_denied")]
        ),
        2.0
    );
    assert_eq!(after.series("gatehouse_auth_failures_total").len(), 1);
    assert_eq!(
        after.get("gatehouse_auth_cache_total", &[("result", "hit")]),
        2.0
    );
    assert_eq!(
        after.get("gatehouse_auth_cache_total", &[("result", "miss")]),
        2.0
    );
    let calls = after.get("gatehouse_auth_service_duration_seconds_count", &[]);
    assert_eq!(calls, 2.0, "one observation per call to the auth service");
    assert_eq!(
        after.get(
            "gatehouse_auth_service_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        calls
    );
    let sum = after.get("gatehouse_auth_service_duration_seconds_sum", &[]);
    assert!(sum > 0.0 && sum < 5.0, "sum {sum}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_expiry_is_the_served_certificates_and_follows_a_reload() {
    let auth = Scripted::start(Answer::status(200)).await;
    let (gw, _up) = ops_gateway(&auth).await;
    let metrics = scrape(&gw).await;
    let expiry = |m: &Exposition, host| {
        m.get(
            "gatehouse_tls_cert_expiry_timestamp_seconds",
            &[("host", host)],
        )
    };
    // The default certificate is labelled by its first DNS name, the SNI one by its host.
    let default_served = served_cert(&gw, "localhost").await;
    assert_eq!(expiry(&metrics, "localhost"), not_after(&default_served));
    let sni_served = served_cert(&gw, SNI_HOST).await;
    assert_eq!(expiry(&metrics, SNI_HOST), not_after(&sni_served));
    assert_eq!(
        metrics
            .series("gatehouse_tls_cert_expiry_timestamp_seconds")
            .len(),
        2
    );
    let loaded_at = metrics.get("gatehouse_last_reload_success_timestamp_seconds", &[]);
    assert!(loaded_at > now_secs() - 60.0 && loaded_at <= now_secs());

    // A new SNI certificate expiring 2031-03-04, then a reload.
    let mut params = rcgen::CertificateParams::new(vec![SNI_HOST.to_owned()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2031, 3, 4);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(gw.file("certs/sni.crt"), cert.pem()).unwrap();
    std::fs::write(gw.file("certs/sni.key"), key.serialize_pem()).unwrap();
    let reload_started = now_secs();
    assert!(matches!(
        gw.gateway().reload().await,
        gatehouse::reload::ReloadOutcome::Applied { .. }
    ));
    let reloaded = scrape(&gw).await;
    assert_eq!(expiry(&reloaded, SNI_HOST), 1_930_348_800.0);
    assert_eq!(
        expiry(&reloaded, SNI_HOST),
        not_after(&served_cert(&gw, SNI_HOST).await)
    );
    assert_eq!(
        expiry(&reloaded, "localhost"),
        expiry(&metrics, "localhost")
    );
    let reloaded_at = reloaded.get("gatehouse_last_reload_success_timestamp_seconds", &[]);
    assert!(
        reloaded_at >= (reload_started * 1000.0).floor() / 1000.0,
        "{reloaded_at} < {reload_started}"
    );

    // A failed reload moves neither the timestamp nor the served certificate's expiry.
    std::fs::write(gw.file("certs/sni.crt"), "not a certificate").unwrap();
    assert!(matches!(
        gw.gateway().reload().await,
        gatehouse::reload::ReloadOutcome::Failed { .. }
    ));
    let failed = scrape(&gw).await;
    assert_eq!(
        failed.get("gatehouse_last_reload_success_timestamp_seconds", &[]),
        reloaded_at
    );
    assert_eq!(
        failed.get("gatehouse_reloads_total", &[("result", "error")]),
        1.0
    );
    assert_eq!(expiry(&failed, SNI_HOST), 1_930_348_800.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_info_and_process_metrics_describe_this_process() {
    let auth = Scripted::start(Answer::status(200)).await;
    let (gw, _up) = ops_gateway(&auth).await;
    // A test process of its own (cargo nextest) may not have used one clock tick of CPU yet;
    // the metric must then still read the CPU this process has used.
    use_cpu_ticks(2);
    let first = scrape(&gw).await;
    assert_eq!(
        first.get(
            "gatehouse_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    if !cfg!(target_os = "linux") {
        assert!(first.series("process_open_fds").is_empty());
        return;
    }
    let rss = first.get("process_resident_memory_bytes", &[]);
    assert!(rss > 1024.0 * 1024.0 && rss <= first.get("process_virtual_memory_bytes", &[]));
    let fds = first.get("process_open_fds", &[]);
    assert!(fds >= 3.0 && fds <= first.get("process_max_fds", &[]));
    let start = first.get("process_start_time_seconds", &[]);
    assert!(start <= now_secs() + 1.0 && start > now_secs() - 3600.0);
    for _ in 0..20 {
        gw.get("/nginx-health").await;
    }
    let second = scrape(&gw).await;
    assert!(
        second.get("process_cpu_seconds_total", &[]) >= first.get("process_cpu_seconds_total", &[])
    );
    assert!(first.get("process_cpu_seconds_total", &[]) > 0.0);
}

// ------------------------------------------------------------------ the Grafana dashboard

/// The dashboard the check reads: `$GATEHOUSE_DASHBOARD` (to try a changed copy), else
/// `deploy/grafana/gatehouse.json`.
fn dashboard_path() -> std::path::PathBuf {
    std::env::var_os("GATEHOUSE_DASHBOARD").map_or_else(
        || concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/gatehouse.json").into(),
        Into::into,
    )
}

/// Every query in the dashboard: panel targets' `expr` and template variables' `query`.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        // Panel targets, and template variables' `label_values(...)` queries.
                        ("expr" | "query", serde_json::Value::String(expr)) => {
                            out.push(expr.clone());
                        }
                        _ => walk(inner, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The metric names (`gatehouse_*`, `process_*`) a PromQL expression mentions.
fn queried_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if is_ident(bytes[i]) && (i == 0 || !is_ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("gatehouse_") || word.starts_with("process_") {
                names.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The queried names the exposition does not export (histogram suffixes resolve).
fn unknown_names(exprs: &[String], exported: &Exposition) -> Vec<String> {
    exprs
        .iter()
        .flat_map(|expr| queried_names(expr))
        .filter(|name| exported.family_of(name).is_none())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `.ci/check-deploy` runs this: the dashboard may only query series a real gateway exports
/// (the names come from a scrape, so the list cannot drift from the code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_only_series_the_gateway_exports() {
    let auth = Scripted::start(Answer::status(200)).await;
    let (gw, _up) = ops_gateway(&auth).await;
    let exported = scrape(&gw).await;
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 10, "only {} queries found", exprs.len());
    let unknown = unknown_names(&exprs, &exported);
    assert!(
        unknown.is_empty(),
        "{} queries series the gateway does not export: {unknown:?}\nexported families: {:?}",
        path.display(),
        exported.types.keys().collect::<Vec<_>>()
    );
    // The check itself must be able to fail: a made-up series and a misspelt suffix are caught.
    let made_up = [
        "sum(rate(gatehouse_requests_totl[5m]))".to_owned(),
        "histogram_quantile(0.9, rate(gatehouse_reloads_total_bucket[5m]))".to_owned(),
    ];
    assert_eq!(
        unknown_names(&made_up, &exported),
        ["gatehouse_reloads_total_bucket", "gatehouse_requests_totl"]
    );
}

/// Spins until this process has used at least `ticks` clock ticks of CPU (user + system, from
/// `/proc/self/stat`), for at most 5 s. Does nothing where there is no `/proc`.
fn use_cpu_ticks(ticks: u64) {
    let used = || -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Read here, not through the gateway's own parser: the test checks that parser.
        let after_name = stat.get(stat.rfind(')')? + 2..)?;
        let mut fields = after_name.split_whitespace().skip(11);
        Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut spin = 0u64;
    while used().is_some_and(|used| used < ticks) && std::time::Instant::now() < deadline {
        for i in 0..100_000u64 {
            spin = std::hint::black_box(spin.wrapping_add(i));
        }
    }
}
