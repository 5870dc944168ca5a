//! The `/metrics` families computed at scrape time from the current runtime and the process:
//! certificate expiry, the external auth service, build info and `process_*`.

use std::fmt::Write as _;

use super::auth_service::AuthServiceStats;
use super::traffic::escape;
use crate::runtime::Runtime;

/// Appends the scrape-time families for `runtime` (the one new requests use).
pub(crate) fn render(out: &mut String, runtime: &Runtime) {
    super::metrics::header(
        out,
        "gatehouse_tls_cert_expiry_timestamp_seconds",
        "gauge",
        "When each served certificate expires (Unix seconds), by host: an [[tls.sni]] host, or \
         the default certificate's first DNS name (\"default\" if it has none).",
    );
    for cert in &runtime.certificates {
        let _ = writeln!(
            out,
            "gatehouse_tls_cert_expiry_timestamp_seconds{{host=\"{}\"}} {}",
            escape(&cert.host),
            cert.not_after
        );
    }
    let external = runtime.auth.external.as_ref().map(|e| e.stats());
    AuthServiceStats::render(external, out);
    super::process::render(out);
}
