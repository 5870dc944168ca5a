//! The audit log (SPEC §7, `[audit] path`): one hash-chained JSON line per authenticated
//! request and per auth denial.
//!
//! A line holds, in this order: `time` (RFC 3339 UTC, milliseconds), `request_id`, `identity`
//! (`null` when anonymous), `auth_method`, `client_ip`, `method`, `path` (as sent, with the values
//! of credential-looking query keys redacted), `route` (the configured path), `status`, and
//! `prev` (see [`chain`]).
//!
//! - The request path only formats the record; [`writer`] seals and appends it on its own thread.
//! - A write (POST/PUT/PATCH/DELETE) waits until its line was appended (`write(2)` returned)
//!   before the response goes back to hyper; a read hands its line over and goes on.
//! - Failure policy, fail-closed for writes: after a failed append, write requests are answered
//!   503 `audit log unavailable` *without being forwarded* until an append succeeds again (reads,
//!   denials and the refused writes' own records keep trying, so the log heals itself once the
//!   disk has room or the path is writable). Reads are served throughout. Every record that could
//!   not be written counts in `gatehouse_audit_write_errors_total`. The write that discovers the
//!   failure was already forwarded: it keeps the upstream's response (it did happen) and is
//!   counted as missing.
//! - [`AuditLog::build`] refuses a path it cannot open for appending, so an unwritable folder
//!   fails the start or the reload like any config error.

pub(crate) mod chain;
pub(crate) mod verify;
mod writer;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, StatusCode, Uri};
use tokio::sync::oneshot;

use crate::auth::roles::is_write;
use crate::config::collect::KeyError;
use crate::error::GatewayError;
use crate::observe::redact_query::redact_query;
use writer::{Entry, Sink};

/// The setting every build error is reported at.
const KEY: &str = "audit.path";

/// Opens `path` for appending, creating it: the proof a writer could append there.
fn open_for_append(path: &Path) -> Result<(), KeyError> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(drop)
        .map_err(|e| KeyError::new(KEY, format!("{}: cannot append: {e}", path.display())))
}

/// The audit log as one runtime sees it: its path, and the writer shared with every runtime
/// before and after it, so a reload never forks the chain.
#[derive(Debug, Clone)]
pub(crate) struct AuditLog {
    sink: Arc<Sink>,
    path: Arc<PathBuf>,
    generation: u64,
}

impl AuditLog {
    /// The audit log for a runtime of `generation` writing to `path`; reuses `previous`'s writer.
    /// Opens the file (creating it) to prove it can be appended to.
    ///
    /// # Errors
    /// The path cannot be opened for appending (missing or read-only folder, a directory).
    pub(crate) fn build(
        path: &Path,
        generation: u64,
        previous: Option<&AuditLog>,
    ) -> Result<Self, KeyError> {
        open_for_append(path)?;
        let path = Arc::new(path.to_owned());
        let sink = match previous {
            Some(previous) => previous.sink.clone(),
            None => Arc::new(
                Sink::start(path.clone(), generation)
                    .map_err(|reason| KeyError::new(KEY, reason))?,
            ),
        };
        Ok(Self {
            sink,
            path,
            generation,
        })
    }

    /// Whether `path` can be appended to, as [`AuditLog::build`] checks it, but starting no
    /// writer and leaving no file behind (`gatehouse check`, a reload that fails elsewhere).
    ///
    /// # Errors
    /// As [`AuditLog::build`].
    pub(crate) fn check(path: &Path) -> Result<(), KeyError> {
        let existed = path.exists();
        open_for_append(path)?;
        if !existed {
            // Created only to prove it could be; the writer creates it again when it starts.
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    /// False after a failed append, until one succeeds.
    pub(crate) fn healthy(&self) -> bool {
        self.sink.health.ok.load(Ordering::Relaxed)
    }

    /// Records that could not be written since the log was first configured.
    pub(crate) fn write_errors(&self) -> u64 {
        self.sink.health.errors.load(Ordering::Relaxed)
    }

    /// Queues a record; with `wait`, returns once it was appended (true) or failed (false).
    async fn append(&self, body: Vec<u8>, wait: bool) -> bool {
        let (done, appended) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let entry = Entry {
            body,
            generation: self.generation,
            target: self.path.clone(),
            done,
        };
        if self.sink.queue.send(entry).await.is_err() {
            // The writer thread is gone; nothing will reach the file.
            self.sink.health.errors.fetch_add(1, Ordering::Relaxed);
            self.sink.health.ok.store(false, Ordering::Relaxed);
            return false;
        }
        match appended {
            Some(appended) => appended.await.unwrap_or(false),
            None => true,
        }
    }
}

/// Fail-closed gate before forwarding: a write is refused while the audit log cannot be written.
///
/// # Errors
/// [`GatewayError::AuditUnavailable`] for a write while the last append failed.
pub(crate) fn admit(audit: Option<&AuditLog>, method: &Method) -> Result<(), GatewayError> {
    match audit {
        Some(audit) if is_write(method) && !audit.healthy() => Err(GatewayError::AuditUnavailable),
        _ => Ok(()),
    }
}

/// What the request path knows about a finished request, for its audit line.
#[derive(Debug)]
pub(crate) struct Facts<'a> {
    /// The request id, as echoed to the client.
    pub(crate) request_id: &'a str,
    /// Who the caller is and how they authenticated, once known.
    pub(crate) identity: Option<(&'a str, &'static str)>,
    /// The client IP under the trusted-proxy rule.
    pub(crate) client_ip: std::net::IpAddr,
    /// The route's label (the metrics' label), if one matched.
    pub(crate) route: Option<&'a str>,
    /// The method as the client sent it.
    pub(crate) method: &'a Method,
    /// The request target as the client sent it (the query is redacted here).
    pub(crate) uri: &'a Uri,
    /// The response status.
    pub(crate) status: StatusCode,
    /// Whether authentication or authorization refused the request.
    pub(crate) denial: bool,
}

/// Writes the request's audit line if it is audited (an identity, or an auth denial); a write
/// method returns only once the line was appended.
pub(crate) async fn record(audit: Option<&AuditLog>, facts: Facts<'_>) {
    let Some(audit) = audit else { return };
    if facts.identity.is_none() && !facts.denial {
        return;
    }
    let target = match facts.uri.query() {
        Some(query) => format!("{}?{}", facts.uri.path(), redact_query(query)),
        None => facts.uri.path().to_owned(),
    };
    let fields = Fields {
        request_id: facts.request_id,
        identity: facts.identity.map(|(subject, _)| subject),
        auth_method: facts.identity.map(|(_, method)| method),
        client_ip: facts.client_ip,
        method: facts.method.as_str(),
        path: &target,
        route: facts.route,
        status: facts.status.as_u16(),
    };
    let body = fields.body(&now_rfc3339_ms());
    // Boxed: only an audited request appends; every other keeps a small future.
    Box::pin(audit.append(body, is_write(facts.method))).await;
}

/// A record's fields, before the writer adds `prev`.
#[derive(Debug)]
struct Fields<'a> {
    request_id: &'a str,
    identity: Option<&'a str>,
    auth_method: Option<&'static str>,
    client_ip: std::net::IpAddr,
    method: &'a str,
    path: &'a str,
    route: Option<&'a str>,
    status: u16,
}

impl Fields<'_> {
    /// `{"time":…,…,"status":N` — the record without `prev` and the closing brace.
    fn body(&self, time: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.path.len());
        out.extend_from_slice(b"{\"time\":");
        json_str(&mut out, Some(time));
        out.extend_from_slice(b",\"request_id\":");
        json_str(&mut out, Some(self.request_id));
        out.extend_from_slice(b",\"identity\":");
        json_str(&mut out, self.identity);
        out.extend_from_slice(b",\"auth_method\":");
        json_str(&mut out, self.auth_method);
        out.extend_from_slice(b",\"client_ip\":");
        json_str(&mut out, Some(&self.client_ip.to_string()));
        out.extend_from_slice(b",\"method\":");
        json_str(&mut out, Some(self.method));
        out.extend_from_slice(b",\"path\":");
        json_str(&mut out, Some(self.path));
        out.extend_from_slice(b",\"route\":");
        json_str(&mut out, self.route);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out
    }
}

/// A JSON string (escaped by serde_json) or `null`.
fn json_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        // Writing into a Vec cannot fail.
        Some(value) => drop(serde_json::to_writer(&mut *out, value)),
        None => out.extend_from_slice(b"null"),
    }
}

/// Now as `2026-12-05T12:00:00.123Z`.
fn now_rfc3339_ms() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_default()
}

/// `gatehouse_audit_write_errors_total` for `/metrics` (0 without an audit log, so the series
/// always exists for alerts).
pub(crate) fn render_metrics(audit: Option<&AuditLog>, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP gatehouse_audit_write_errors_total Audit records that could not be written (missing from the log)."
    );
    let _ = writeln!(out, "# TYPE gatehouse_audit_write_errors_total counter");
    let _ = writeln!(
        out,
        "gatehouse_audit_write_errors_total {}",
        audit.map_or(0, AuditLog::write_errors)
    );
}

#[cfg(test)]
mod tests;
