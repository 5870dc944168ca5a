//! TLS: builds the rustls `ServerConfig` a runtime serves with — default certificate (loaded, or
//! generated self-signed on first start), `[[tls.sni]]` certificates chosen by SNI, the minimum
//! version, ALPN `h2` + `http/1.1`, and the optional client-certificate verifier for
//! `[tls] client_ca` ([`client_auth`]).
//!
//! The config lives in the runtime snapshot: a reload builds a new one and new handshakes use it,
//! while open connections keep the session they negotiated.

pub(crate) mod certs;
pub(crate) mod client_auth;
pub(crate) mod expiry;
pub(crate) mod files;
pub(crate) mod self_signed;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};

use crate::config::collect::{Collector, KeyError, optional};
use crate::config::{TlsSettings, TlsVersion};

/// What [`build`] made: the server config and the expiry of each certificate it serves.
#[derive(Debug)]
pub(crate) struct Served {
    /// TLS for new handshakes.
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// One entry per served host name (see [`expiry::served`]).
    pub(crate) certificates: Vec<expiry::CertExpiry>,
}

/// Builds the server config for `settings`. On first start (`first_start`), a self-signed
/// default certificate is generated when both its files are missing; on a reload missing files
/// are an error, so deleting a pair before copying its replacement never swaps in a self-signed
/// certificate.
///
/// Every unusable file is recorded in `check` at its key (`tls.cert`, `tls.sni[1].key`,
/// `tls.client_ca`), never key material; `None` when any was.
pub(crate) fn build(
    settings: &TlsSettings,
    first_start: bool,
    check: &mut Collector,
) -> Option<Served> {
    let default = if !first_start || ensure_default_certificate(settings, check) {
        files::pair(check, "tls", &settings.cert, &settings.key)
    } else {
        None
    };
    let sni_keys = files::sni(settings, check);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = optional(settings.client_ca.as_deref().map(|bundle| {
        check.keyed(
            client_auth::verifier(bundle, provider.clone())
                .map_err(|reason| KeyError::new(files::CLIENT_CA, reason)),
        )
    }));
    let (default, sni_keys, verifier) = (default?, sni_keys?, verifier?);
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::Tls12 => &[&TLS13, &TLS12],
        TlsVersion::Tls13 => &[&TLS13],
    };
    let builder = check.keyed(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| KeyError::new("tls.min_version", format!("TLS setup failed: {e}"))),
    )?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver::new(&default, &sni_keys)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // TLS 1.2: our cipher-suite order (AEAD, forward secrecy first) wins over the client's, so a
    // client preferring a weaker suite cannot pick it (SPEC §8.11; testssl "server cipher order").
    config.ignore_client_order = true;
    let sni_keys: Vec<_> = sni_keys.iter().map(|(h, k)| (*h, &**k)).collect();
    // Which certificate did not parse is not known here: the `[tls]` table is named.
    let certificates = check.keyed(
        expiry::served(&default, &sni_keys).map_err(|reason| KeyError::new("tls", reason)),
    )?;
    Some(Served {
        config: Arc::new(config),
        certificates,
    })
}

/// Generates the default certificate if neither file exists; refuses if only one does (never
/// overwrite half of an operator's pair). False, with the problem recorded, when there is no
/// pair to load.
fn ensure_default_certificate(settings: &TlsSettings, check: &mut Collector) -> bool {
    match (settings.cert.exists(), settings.key.exists()) {
        (true, true) => true,
        (false, false) => {
            let generated = match self_signed::generate(
                &settings.self_signed_hosts,
                &settings.cert,
                &settings.key,
            ) {
                Ok(generated) => generated,
                Err(reason) => {
                    check.error("tls.cert", reason);
                    return false;
                }
            };
            tracing::warn!(
                cert = %settings.cert.display(),
                fingerprint = %generated.fingerprint,
                hosts = settings.self_signed_hosts.join(","),
                "generated a self-signed certificate; replace it with a real one for production"
            );
            true
        }
        (true, false) => half_pair(
            check,
            ("tls.key", "key file", &settings.key),
            ("certificate", &settings.cert),
        ),
        (false, true) => half_pair(
            check,
            ("tls.cert", "certificate file", &settings.cert),
            ("key", &settings.key),
        ),
    }
}

/// Records that `missing` (key, what, path) is missing while its other half exists; false.
fn half_pair(
    check: &mut Collector,
    (key, what, missing): (&str, &str, &Path),
    (other, present): (&str, &Path),
) -> bool {
    let reason = format!(
        "{}: {what} missing ({other} {} exists)",
        missing.display(),
        present.display()
    );
    check.error(key, reason);
    false
}

/// Picks a certificate by SNI: exact name, then `*.suffix` (one label), then the default.
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// `(".example.com", key)` for `*.example.com`.
    wildcards: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn new(default: &Arc<CertifiedKey>, sni: &[(&[String], Arc<CertifiedKey>)]) -> Self {
        let mut resolver = Self {
            by_name: HashMap::new(),
            wildcards: Vec::new(),
            default: default.clone(),
        };
        for (hosts, key) in sni {
            for host in *hosts {
                match host.strip_prefix("*.") {
                    Some(suffix) => resolver.wildcards.push((format!(".{suffix}"), key.clone())),
                    None => {
                        resolver.by_name.insert(host.clone(), key.clone());
                    }
                }
            }
        }
        resolver
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.by_name.get(&name) {
            return Some(key.clone());
        }
        let wildcard = self.wildcards.iter().find(|(suffix, _)| {
            name.strip_suffix(suffix.as_str())
                .is_some_and(|label| !label.is_empty() && !label.contains('.'))
        });
        Some(wildcard.map_or_else(|| self.default.clone(), |(_, key)| key.clone()))
    }
}
