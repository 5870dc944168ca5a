//! Observability: metrics now; the access log and the audit log join here.

pub mod metrics;
pub mod traffic;
