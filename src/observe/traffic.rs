//! Per-request metrics: `gatehouse_requests_total{route,method,status}`, the request and
//! upstream duration histograms, and the request and response body bytes by route.
//!
//! These are touched by every request, so the counters live in [`SHARDS`] independently locked
//! maps; a thread always uses the same shard, so two worker threads practically never contend
//! and no lock is global. Labels are bounded: the route is its configured path (or `none`), the
//! method one of the standard methods (or `OTHER`), the upstream its configured name.

// foldhash: the keys are route names and methods from the config, not from clients, and SipHash
// showed in the per-request profile (BENCHMARKS.md, "Instruction counts").
use foldhash::{HashMap, HashMapExt};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::Method;

/// Independently locked maps; more than the worker threads of a small node.
const SHARDS: usize = 16;

/// Counts `took` in `key`'s histogram, cloning the key only the first time.
fn observe_in(family: &mut HashMap<Arc<str>, Histogram>, key: &Arc<str>, took: Duration) {
    let histogram = match family.get_mut(&**key) {
        Some(histogram) => histogram,
        None => family.entry(key.clone()).or_default(),
    };
    histogram.observe(took.as_secs_f64());
}

/// Histogram bucket upper bounds, in seconds.
pub(crate) const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One histogram's state.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, bucket) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
    }
}

#[derive(Debug, Default)]
struct Shard {
    requests: HashMap<(Arc<str>, &'static str, u16), u64>,
    durations: HashMap<Arc<str>, Histogram>,
    upstreams: HashMap<Arc<str>, Histogram>,
    /// (request body bytes, response body bytes) by route.
    bytes: HashMap<Arc<str>, (u64, u64)>,
}

/// The per-request metric families.
#[derive(Debug)]
pub(crate) struct Traffic {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

thread_local! {
    /// This thread's shard, assigned round robin on first use.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// The `method` label: standard methods by name, anything else `OTHER` (bounded cardinality).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

impl Traffic {
    fn with_shard(&self, update: impl FnOnce(&mut Shard)) {
        let index = SHARD.with(|s| *s);
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        update(&mut shard);
    }

    /// Records one finished request (and, if it reached one, its upstream call).
    pub(crate) fn record(
        &self,
        route: &Arc<str>,
        method: &Method,
        status: u16,
        elapsed: Duration,
        upstream: Option<(&Arc<str>, Duration)>,
    ) {
        self.record_labelled(route, method_label(method), status, elapsed, upstream);
    }

    /// Records a request whose head could not be parsed (hyper answered it): method `OTHER`.
    pub(crate) fn record_unparsed(&self, route: &Arc<str>, status: u16) {
        self.record_labelled(route, "OTHER", status, Duration::ZERO, None);
    }

    fn record_labelled(
        &self,
        route: &Arc<str>,
        method: &'static str,
        status: u16,
        elapsed: Duration,
        upstream: Option<(&Arc<str>, Duration)>,
    ) {
        // Looked up before `entry`: the keys are almost always there, and `entry` would clone
        // each `Arc` (two atomic operations) to find that out.
        self.with_shard(|shard| {
            let key = (route.clone(), method, status);
            *shard.requests.entry(key).or_default() += 1;
            observe_in(&mut shard.durations, route, elapsed);
            if let Some((name, took)) = upstream {
                observe_in(&mut shard.upstreams, name, took);
            }
        });
    }

    /// Adds a finished response's body bytes (and its request's) to the route's byte counters.
    /// Called when the response body ends, possibly on another thread than [`Traffic::record`].
    pub(crate) fn bytes(&self, route: &Arc<str>, request: u64, response: u64) {
        self.with_shard(|shard| {
            let totals = match shard.bytes.get_mut(route) {
                Some(totals) => totals,
                None => shard.bytes.entry(route.clone()).or_default(),
            };
            totals.0 += request;
            totals.1 += response;
        });
    }

    /// Prometheus text for the five families.
    pub(crate) fn render(&self, out: &mut String) {
        let mut requests: HashMap<(Arc<str>, &'static str, u16), u64> = HashMap::new();
        let mut durations: HashMap<Arc<str>, Histogram> = HashMap::new();
        let mut upstreams: HashMap<Arc<str>, Histogram> = HashMap::new();
        let mut bytes: HashMap<Arc<str>, (u64, u64)> = HashMap::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (route, (request, response)) in &shard.bytes {
                let totals = bytes.entry(route.clone()).or_default();
                totals.0 += request;
                totals.1 += response;
            }
            for (key, count) in &shard.requests {
                *requests.entry(key.clone()).or_default() += count;
            }
            for (route, histogram) in &shard.durations {
                durations.entry(route.clone()).or_default().merge(histogram);
            }
            for (name, histogram) in &shard.upstreams {
                upstreams.entry(name.clone()).or_default().merge(histogram);
            }
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_requests_total Requests by route (configured path), method and status."
        );
        let _ = writeln!(out, "# TYPE gatehouse_requests_total counter");
        let mut rows: Vec<_> = requests.into_iter().collect();
        rows.sort();
        for ((route, method, status), count) in rows {
            let _ = writeln!(
                out,
                "gatehouse_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {count}",
                escape(&route)
            );
        }
        histogram_family(
            out,
            "gatehouse_request_duration_seconds",
            "route",
            "Time from request head to response head.",
            durations,
        );
        histogram_family(
            out,
            "gatehouse_upstream_duration_seconds",
            "upstream",
            "Time for the upstream to send response headers.",
            upstreams,
        );
        bytes_families(out, bytes);
    }
}

/// `gatehouse_request_bytes_total{route}` and `gatehouse_response_bytes_total{route}`.
fn bytes_families(out: &mut String, bytes: HashMap<Arc<str>, (u64, u64)>) {
    let mut rows: Vec<_> = bytes.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, help, pick) in [
        (
            "gatehouse_request_bytes_total",
            "Request body bytes read from clients and forwarded, by route.",
            (|t: &(u64, u64)| t.0) as fn(&(u64, u64)) -> u64,
        ),
        (
            "gatehouse_response_bytes_total",
            "Response body bytes sent to clients, by route.",
            |t: &(u64, u64)| t.1,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (route, totals) in &rows {
            let _ = writeln!(
                out,
                "{name}{{route=\"{}\"}} {}",
                escape(route),
                pick(totals)
            );
        }
    }
}

fn histogram_family(
    out: &mut String,
    name: &str,
    label: &str,
    help: &str,
    family: HashMap<Arc<str>, Histogram>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut rows: Vec<_> = family.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (value, histogram) in rows {
        let value = escape(&value);
        for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{label}=\"{value}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {}", histogram.sum);
        let _ = writeln!(
            out,
            "{name}_count{{{label}=\"{value}\"}} {}",
            histogram.count
        );
    }
}

/// Escapes a label value (backslash, quote, newline).
pub(crate) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histograms_render_with_bounded_labels() {
        let traffic = Traffic::default();
        let route: Arc<str> = Arc::from("/api");
        let upstream: Arc<str> = Arc::from("api-service");
        traffic.record(
            &route,
            &Method::GET,
            200,
            Duration::from_millis(3),
            Some((&upstream, Duration::from_millis(2))),
        );
        traffic.record(
            &route,
            &Method::from_bytes(b"BREW").unwrap(),
            405,
            Duration::from_millis(30),
            None,
        );
        traffic.bytes(&route, 10, 2000);
        traffic.bytes(&route, 0, 5);
        let mut text = String::new();
        traffic.render(&mut text);
        for line in [
            "gatehouse_requests_total{route=\"/api\",method=\"GET\",status=\"200\"} 1",
            "gatehouse_requests_total{route=\"/api\",method=\"OTHER\",status=\"405\"} 1",
            "gatehouse_request_duration_seconds_bucket{route=\"/api\",le=\"0.005\"} 1",
            "gatehouse_request_duration_seconds_bucket{route=\"/api\",le=\"+Inf\"} 2",
            "gatehouse_request_duration_seconds_count{route=\"/api\"} 2",
            "gatehouse_upstream_duration_seconds_count{upstream=\"api-service\"} 1",
            "gatehouse_request_bytes_total{route=\"/api\"} 10",
            "gatehouse_response_bytes_total{route=\"/api\"} 2005",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
