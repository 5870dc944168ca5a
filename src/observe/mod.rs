//! Observability: metrics, the access log (line format, query redaction, the off-path writer);
//! the audit log joins here.

pub mod access_log;
pub mod json_line;
pub mod log_writer;
pub mod metrics;
pub mod redact_query;
pub mod traffic;
