//! Observability: metrics now; the access log and the audit log join here.

pub mod audit;
pub mod metrics;
pub mod query;
pub mod traffic;
