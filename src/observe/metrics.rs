//! Prometheus metrics: a handful of lock-free counters owned by [`crate::runtime::Shared`] (so
//! they survive reloads), rendered as Prometheus text on the admin `/metrics`.
//!
//! Counters on the per-request path are atomics; labelled families that only grow on refusals
//! (rate limits, upstream errors) use a short `std::sync::Mutex` critical section on that rare
//! path only. Label values are configured names (route paths, upstream names), never request
//! data, so cardinality is bounded by the config.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::traffic::escape;
use crate::error::{AuthFailure, GatewayError};

/// The metric registry.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
    /// Unix milliseconds of the last successful reload (the first load counts).
    last_reload_ok_ms: AtomicU64,
    /// By (route label, reason); routes come from the config, reasons from [`AuthFailure`], so
    /// the map stays small.
    auth_failures: Mutex<BTreeMap<(String, AuthFailure), u64>>,
    active_connections: AtomicI64,
    parked_connections: AtomicI64,
    rate_limited: Mutex<BTreeMap<String, u64>>,
    upstream_errors: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Per-request counters and histograms.
    pub(crate) traffic: super::traffic::Traffic,
}

impl Metrics {
    /// Counts a reload attempt.
    pub(crate) fn reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if ok {
            self.last_reload_ok_ms
                .store(unix_millis(), Ordering::Relaxed);
        }
    }

    /// Counts a refused request by the reason its error implies (no-op for other errors).
    /// `route` is the request's metric label ([`super::labels::RouteLabels::label`]).
    pub(crate) fn refused(&self, error: &GatewayError, route: &str) {
        if let Some(reason) = error.auth_failure() {
            let mut map = self
                .auth_failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *map.entry((route.to_owned(), reason)).or_default() += 1;
        }
        match error {
            GatewayError::RateLimited { .. } => {
                let mut map = self
                    .rate_limited
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                *map.entry(route.to_owned()).or_default() += 1;
            }
            GatewayError::UpstreamUnavailable(name) => self.upstream_error(name, "unavailable"),
            GatewayError::UpstreamTimeout(name) => self.upstream_error(name, "timeout"),
            // The other refusals have no counter of their own here.
            _ => {}
        }
    }

    fn upstream_error(&self, name: &str, kind: &'static str) {
        let mut map = self
            .upstream_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry((name.to_owned(), kind)).or_default() += 1;
    }

    /// A connection opened (+1) or closed (-1).
    pub(crate) fn connections(&self, delta: i64) {
        self.active_connections.fetch_add(delta, Ordering::Relaxed);
    }

    /// An HTTP/1 keep-alive connection parked (+1: it holds no HTTP buffers until its next
    /// request) or woke (-1).
    pub(crate) fn parked(&self, delta: i64) {
        self.parked_connections.fetch_add(delta, Ordering::Relaxed);
    }

    /// Prometheus text exposition. `tokens` = (active, expired, disabled) of the current store.
    pub(crate) fn render(&self, tokens: (usize, usize, usize)) -> String {
        let mut out = String::with_capacity(4096);
        self.traffic.render(&mut out);
        header(
            &mut out,
            "gatehouse_reloads_total",
            "counter",
            "Reload attempts by result (the first load counts as ok).",
        );
        let _ = writeln!(
            out,
            "gatehouse_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "gatehouse_reloads_total{{result=\"error\"}} {}",
            self.reloads_error.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "gatehouse_last_reload_success_timestamp_seconds",
            "gauge",
            "When the configuration was last loaded or reloaded successfully (Unix seconds).",
        );
        let _ = writeln!(
            out,
            "gatehouse_last_reload_success_timestamp_seconds {:.3}",
            self.last_reload_ok_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        header(
            &mut out,
            "gatehouse_auth_failures_total",
            "counter",
            "Requests refused by authentication or authorization, by route and reason.",
        );
        for ((route, reason), count) in self
            .auth_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "gatehouse_auth_failures_total{{route=\"{}\",reason=\"{}\"}} {count}",
                escape(route),
                reason.label()
            );
        }
        header(
            &mut out,
            "gatehouse_rate_limited_total",
            "counter",
            "Requests refused by a rate limit, by route.",
        );
        for (route, count) in self
            .rate_limited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "gatehouse_rate_limited_total{{route=\"{}\"}} {count}",
                escape(route)
            );
        }
        header(
            &mut out,
            "gatehouse_upstream_errors_total",
            "counter",
            "Failed upstream calls by upstream and kind.",
        );
        for ((name, kind), count) in self
            .upstream_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "gatehouse_upstream_errors_total{{upstream=\"{}\",kind=\"{kind}\"}} {count}",
                escape(name)
            );
        }
        header(
            &mut out,
            "gatehouse_active_connections",
            "gauge",
            "Open client connections.",
        );
        let _ = writeln!(
            out,
            "gatehouse_active_connections {}",
            self.active_connections.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "gatehouse_parked_connections",
            "gauge",
            "Idle HTTP/1 keep-alive connections holding no HTTP buffers until their next request.",
        );
        let _ = writeln!(
            out,
            "gatehouse_parked_connections {}",
            self.parked_connections.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "gatehouse_tokens",
            "gauge",
            "Tokens in the store by state.",
        );
        for (state, count) in [
            ("active", tokens.0),
            ("expired", tokens.1),
            ("disabled", tokens.2),
        ] {
            let _ = writeln!(out, "gatehouse_tokens{{state=\"{state}\"}} {count}");
        }
        out
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let metrics = Metrics::default();
        metrics.reload(true);
        metrics.reload(false);
        metrics.refused(&GatewayError::InvalidToken, "/api");
        metrics.refused(
            &GatewayError::RateLimited {
                retry_after_secs: 1,
            },
            "/api",
        );
        let text = metrics.render((2, 1, 0));
        for line in [
            "gatehouse_reloads_total{result=\"error\"} 1",
            "gatehouse_auth_failures_total{route=\"/api\",reason=\"invalid\"} 1",
            "gatehouse_rate_limited_total{route=\"/api\"} 1",
            "gatehouse_tokens{state=\"active\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
