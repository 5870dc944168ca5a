//! Observability: metrics now; the access log and the audit log join here.

pub mod audit;
pub mod auth_service;
pub mod labels;
pub mod metrics;
pub mod process;
pub mod query;
pub mod scrape;
pub mod traffic;
