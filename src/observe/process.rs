//! `gatehouse_build_info` and the standard `process_*` metrics, read from `/proc/self` at scrape
//! time (nothing is sampled in the background). Off Linux the `process_*` families are omitted,
//! as the Prometheus client libraries do.

use std::fmt::Write as _;

/// Linux reports CPU time in `USER_HZ` ticks, which the kernel ABI fixes at 100 on every
/// architecture (`sysconf(_SC_CLK_TCK)` would need `unsafe`, which this crate forbids).
const USER_HZ: f64 = 100.0;

/// Appends `gatehouse_build_info` and, where `/proc/self` exists, the `process_*` families.
pub(crate) fn render(out: &mut String) {
    super::metrics::header(
        out,
        "gatehouse_build_info",
        "gauge",
        "Always 1; the version label names the running build.",
    );
    let _ = writeln!(
        out,
        "gatehouse_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(sample) = Sample::read() {
        sample.render(out);
    }
}

/// One reading of `/proc/self`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: usize,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

impl Sample {
    fn read() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let fields = stat_fields(&stat)?;
        let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time(&text));
        Some(Sample {
            cpu_seconds: (ticks(UTIME)? + ticks(STIME)?) / USER_HZ,
            resident_bytes: status_kib(&status, "VmRSS")? * 1024,
            virtual_bytes: status_kib(&status, "VmSize")? * 1024,
            open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count(),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|text| max_open_files(&text)),
            start_time_seconds: boot.zip(ticks(STARTTIME)).map(|(b, t)| b + t / USER_HZ),
        })
    }

    fn render(&self, out: &mut String) {
        let header = super::metrics::header;
        header(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {}", self.cpu_seconds);
        header(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {}", self.resident_bytes);
        header(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        );
        let _ = writeln!(out, "process_virtual_memory_bytes {}", self.virtual_bytes);
        header(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {}", self.open_fds);
        if let Some(max) = self.max_fds {
            header(
                out,
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
            );
            let _ = writeln!(out, "process_max_fds {max}");
        }
        if let Some(start) = self.start_time_seconds {
            header(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
            );
            let _ = writeln!(out, "process_start_time_seconds {start:.2}");
        }
    }
}

/// Indexes into [`stat_fields`]: proc(5) field numbers minus 3 (index 0 is `state`).
const UTIME: usize = 11;
const STIME: usize = 12;
const STARTTIME: usize = 19;

/// The fields of `/proc/self/stat` after `(comm)`; `comm` may itself hold spaces and `)`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// A `Key:   123 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The soft limit of `Max open files` in `/proc/self/limits` (`None` if unlimited).
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: boot time in Unix seconds.
fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let stat = "4242 (gate house) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 \
                    8 0 123400 1000 10 18446744073709551615";
        let fields = stat_fields(stat).unwrap();
        assert_eq!((fields[UTIME], fields[STIME]), ("250", "50"));
        assert_eq!(fields[STARTTIME], "123400");
        assert_eq!(
            status_kib(
                "Name:\tgatehouse\nVmSize:\t  20480 kB\nVmRSS:\t   1024 kB\n",
                "VmRSS"
            ),
            Some(1024)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764900000\n"),
            Some(1_764_900_000.0)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let sample = Sample::read().unwrap();
        assert!(sample.resident_bytes > 0 && sample.virtual_bytes >= sample.resident_bytes);
        assert!(sample.open_fds > 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = sample.start_time_seconds.unwrap();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0);
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("gatehouse_build_info{version=\""));
        assert!(out.contains("\nprocess_open_fds "));
    }
}
