//! Observability: metrics, the access log (line format, query redaction, the off-path writer);
//! the audit log; the /metrics families.

pub mod access_log;
pub(crate) mod audit;
pub(crate) mod auth_service;
pub(crate) mod json_line;
pub(crate) mod labels;
pub mod log_writer;
pub(crate) mod metrics;
pub(crate) mod process;
pub(crate) mod redact_query;
pub(crate) mod scrape;
pub(crate) mod traffic;
