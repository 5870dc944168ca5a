//! Observability: metrics, the access log (line format, query redaction, the off-path writer);
//! the audit log; the /metrics families.

pub mod access_log;
pub mod audit;
pub mod auth_service;
pub mod json_line;
pub mod labels;
pub mod log_writer;
pub mod metrics;
pub mod process;
pub mod redact_query;
pub mod scrape;
pub mod traffic;
