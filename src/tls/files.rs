//! Reading the files `[tls]` names, each problem recorded at its key (`tls.cert`,
//! `tls.sni[1].key`, `tls.client_ca`) so that a build, and `gatehouse check`, report every
//! unusable file at once. Messages name files, never key material.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;

use super::certs::{self, CertError};
use super::client_auth;
use crate::config::TlsSettings;
use crate::config::collect::{Collector, KeyError};

/// The key `[tls] client_ca` problems are reported at.
pub(super) const CLIENT_CA: &str = "tls.client_ca";

/// The pair under `prefix` (`tls`, `tls.sni[1]`), or `None` with the problem recorded at the
/// file it is in (a mismatch is the key's: it is the key that does not fit).
pub(super) fn pair(
    check: &mut Collector,
    prefix: &str,
    cert: &Path,
    key: &Path,
) -> Option<Arc<CertifiedKey>> {
    let error = match certs::load_certified_key(cert, key) {
        Ok(pair) => return Some(pair),
        Err(error) => error,
    };
    let field = match &error {
        CertError::Unreadable { path, .. } if path == cert => "cert",
        CertError::Unreadable { .. } | CertError::Mismatch { .. } => "key",
    };
    check.error(format!("{prefix}.{field}"), error.to_string());
    None
}

/// Every `[[tls.sni]]` pair with its hosts, or `None` once any failed (all are tried, so all
/// problems are recorded).
pub(super) fn sni<'s>(
    settings: &'s TlsSettings,
    check: &mut Collector,
) -> Option<Vec<(&'s [String], Arc<CertifiedKey>)>> {
    let loaded: Vec<_> = settings
        .sni
        .iter()
        .enumerate()
        .map(|(i, sni)| {
            let pair = pair(check, &format!("tls.sni[{i}]"), &sni.cert, &sni.key)?;
            Some((sni.hosts.as_slice(), pair))
        })
        .collect();
    loaded.into_iter().collect()
}

/// The `client_ca` bundle, or `None` with the problem recorded.
pub(super) fn client_ca(check: &mut Collector, path: &Path) -> Option<RootCertStore> {
    check.keyed(client_auth::load_bundle(path).map_err(|reason| KeyError::new(CLIENT_CA, reason)))
}

/// What `gatehouse check` reads: every certificate pair and the client CA bundle, generating
/// nothing. A default pair missing entirely is no problem when one is generated at start.
pub(crate) fn check(settings: &TlsSettings, check: &mut Collector) {
    let generated_at_start =
        !settings.cert.exists() && !settings.key.exists() && !settings.self_signed_hosts.is_empty();
    if !generated_at_start {
        pair(check, "tls", &settings.cert, &settings.key);
    }
    sni(settings, check);
    if let Some(ca) = &settings.client_ca {
        client_ca(check, ca);
    }
}
