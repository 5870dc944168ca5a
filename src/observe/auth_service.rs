//! `[auth.external]` metrics: `gatehouse_auth_service_duration_seconds` (one histogram over
//! every call to the auth service) and `gatehouse_auth_cache_total{result}` (decision-cache
//! hits and misses).
//!
//! Lock-free atomics: a cache hit sits on the request path. The stats live behind an `Arc` that
//! each rebuilt `ExternalAuth` takes over from the previous one, so the counters survive reloads.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::traffic::BUCKETS;

/// Counters and the call-duration histogram of one external auth service.
#[derive(Debug, Default)]
pub(crate) struct AuthServiceStats {
    hits: AtomicU64,
    misses: AtomicU64,
    /// Per bucket (not cumulative); cumulated when rendered.
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl AuthServiceStats {
    /// A check answered from the decision cache.
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A check the cache could not answer (it called, or waited for a call in flight).
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// One call to the auth service took `took` (a timed-out call counts its timeout).
    pub(crate) fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Appends both families. `None` (no `[auth.external]`) renders them empty, so the names
    /// are always listed.
    pub(crate) fn render(stats: Option<&AuthServiceStats>, out: &mut String) {
        let name = "gatehouse_auth_service_duration_seconds";
        super::metrics::header(
            out,
            name,
            "histogram",
            "Calls to the external auth service, from sending to its decision.",
        );
        if let Some(stats) = stats {
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
            }
            let count = stats.count.load(Ordering::Relaxed);
            let sum = stats.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum {sum}");
            let _ = writeln!(out, "{name}_count {count}");
        }
        super::metrics::header(
            out,
            "gatehouse_auth_cache_total",
            "counter",
            "External auth checks answered from the decision cache (hit) or not (miss).",
        );
        if let Some(stats) = stats {
            for (result, counter) in [("hit", &stats.hits), ("miss", &stats.misses)] {
                let _ = writeln!(
                    out,
                    "gatehouse_auth_cache_total{{result=\"{result}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_slow_calls_only_in_inf() {
        let stats = AuthServiceStats::default();
        stats.observe(Duration::from_millis(3));
        stats.observe(Duration::from_millis(40));
        stats.observe(Duration::from_secs(30));
        stats.hit();
        stats.miss();
        stats.miss();
        let mut out = String::new();
        AuthServiceStats::render(Some(&stats), &mut out);
        for line in [
            "gatehouse_auth_service_duration_seconds_bucket{le=\"0.005\"} 1",
            "gatehouse_auth_service_duration_seconds_bucket{le=\"0.05\"} 2",
            "gatehouse_auth_service_duration_seconds_bucket{le=\"10\"} 2",
            "gatehouse_auth_service_duration_seconds_bucket{le=\"+Inf\"} 3",
            "gatehouse_auth_service_duration_seconds_sum 30.043",
            "gatehouse_auth_service_duration_seconds_count 3",
            "gatehouse_auth_cache_total{result=\"hit\"} 1",
            "gatehouse_auth_cache_total{result=\"miss\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
        let mut empty = String::new();
        AuthServiceStats::render(None, &mut empty);
        assert_eq!(empty.lines().filter(|l| !l.starts_with('#')).count(), 0);
    }
}
