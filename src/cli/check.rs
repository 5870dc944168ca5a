//! The parts of `gatehouse check` and `gatehouse token rotate` output that need more than a line:
//! errors located in the file (`gateway.toml:14:1: routes[1].strip_prefx: unknown key …`), what
//! each route does, the certificate's expiry and the token count.

use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::store_args::StoreArgs;
use crate::auth::token_store;
use crate::config::{self, Config, ConfigError, RouteAction, RouteConfig, UpstreamConfig};

/// Every error, located, in file order (type errors come out of loading first; errors with no
/// place in the file last).
pub(super) fn located_all(errors: &[ConfigError], path: &Path, text: &str) -> Vec<String> {
    let mut lines: Vec<(Option<(usize, usize)>, String)> = errors
        .iter()
        .map(|error| (position(error, path, text), located(error, path, text)))
        .collect();
    lines.sort_by_key(|(position, _)| position.map_or((usize::MAX, 0), |p| p));
    lines.into_iter().map(|(_, line)| line).collect()
}

fn position(error: &ConfigError, path: &Path, text: &str) -> Option<(usize, usize)> {
    (error.file == path && !error.key.is_empty())
        .then(|| config::locate(text, &error.key))
        .flatten()
}

/// `file:line:column: key: reason` when the key is found in `text` (the file at `path`), else the
/// error as it displays.
fn located(error: &ConfigError, path: &Path, text: &str) -> String {
    match position(error, path, text) {
        Some((line, column)) => format!(
            "{}:{line}:{column}: {}: {}",
            error.file.display(),
            error.key,
            error.reason
        ),
        None => error.to_string(),
    }
}

/// What a route does, for the summary: `-> api-service`, `-> redirect 308 /bridge`, `-> respond
/// 200`.
pub(super) fn action(route: &RouteConfig, upstreams: &[UpstreamConfig]) -> String {
    match &route.action {
        RouteAction::Proxy(proxy) => {
            let name = upstreams
                .get(proxy.upstream)
                .map_or("?", |u| u.name.as_str());
            format!("-> {name}")
        }
        RouteAction::Redirect { location, status } => format!("-> redirect {status} {location}"),
        RouteAction::Respond { status, .. } => format!("-> respond {status}"),
    }
}

/// Summary lines for the default certificate's expiry and the token store's size.
pub(super) fn cert_and_tokens(config: &Config, now: OffsetDateTime) -> Vec<String> {
    let mut lines = Vec::new();
    if config.tls.cert.exists() {
        lines.push(format!(
            "  certificate   {}",
            cert_expiry(&config.tls.cert, now)
        ));
    }
    if let Some(store) = &config.auth.tokens {
        // `check_files` already loaded it; a second load only counts (errors were reported, and
        // a missing store was warned about).
        if !store.exists() {
            lines.push(format!(
                "  tokens        none ({} not found)",
                store.display()
            ));
        } else if let Ok(loaded) = token_store::load(store) {
            let (active, expired, disabled) = loaded.counts(now);
            lines.push(format!(
                "  tokens        {} in {} ({active} active, {expired} expired, {disabled} disabled)",
                loaded.entries().len(),
                store.display()
            ));
        }
    }
    lines
}

/// `expires 2027-03-01T00:00:00Z (in 87 days)`, or why it cannot be read.
fn cert_expiry(path: &Path, now: OffsetDateTime) -> String {
    let chain = match crate::tls::certs::load_chain(path) {
        Ok(chain) => chain,
        Err(error) => return format!("unreadable: {error}"),
    };
    let Some(leaf) = chain.first() else {
        return "no certificate in the file".to_owned();
    };
    let not_after = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, cert)) => cert.validity().not_after.to_datetime(),
        Err(_) => return "cannot parse the first certificate".to_owned(),
    };
    let when = not_after
        .format(&Rfc3339)
        .unwrap_or_else(|_| not_after.to_string());
    let days = (not_after - now).whole_days();
    if not_after <= now {
        format!("EXPIRED {when} ({} days ago)", -days)
    } else {
        format!("expires {when} (in {days} days)")
    }
}

/// `token rotate`: prints the new token once on stdout and what happens to the old one on
/// stderr. The old token is never printed (it is not known: only its hash is stored).
pub(super) fn rotate(
    id: &str,
    overlap: &str,
    store: &StoreArgs,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let overlap = config::units::parse_duration(overlap)
        .map_err(|reason| anyhow::anyhow!("--overlap: {reason}"))?;
    let store = store.path();
    let rotated = crate::token_cmd::rotate(&store, id, overlap, now)?;
    let old = match rotated
        .old_until
        .and_then(|until| until.format(&Rfc3339).ok())
    {
        Some(until) => format!("the old token is accepted until {until}"),
        None => "the old token is refused from the gateway's next reload".to_owned(),
    };
    errln!(
        "rotated token {id:?} in {}; {old}; the new one is shown once, store it now:",
        store.display()
    );
    outln!("{}", rotated.token.expose());
    Ok(())
}
