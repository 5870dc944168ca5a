//! TLS: builds the rustls `ServerConfig` a runtime serves with — default certificate (loaded, or
//! generated self-signed on first start), `[[tls.sni]]` certificates chosen by SNI, the minimum
//! version, ALPN `h2` + `http/1.1`, and the optional client-certificate verifier for
//! `[tls] client_ca` ([`client_auth`]).
//!
//! The config lives in the runtime snapshot: a reload builds a new one and new handshakes use it,
//! while open connections keep the session they negotiated.

pub mod certs;
pub mod client_auth;
pub(crate) mod expiry;
pub(crate) mod self_signed;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};

use crate::config::{TlsSettings, TlsVersion};

/// What [`build`] made: the server config and the expiry of each certificate it serves.
#[derive(Debug)]
pub struct Served {
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
/// # Errors
/// A message naming the file and the problem (never key material).
pub fn build(settings: &TlsSettings, first_start: bool) -> Result<Served, String> {
    if first_start {
        ensure_default_certificate(settings)?;
    }
    let default =
        certs::load_certified_key(&settings.cert, &settings.key).map_err(|e| e.to_string())?;
    let mut resolver = SniResolver {
        by_name: HashMap::new(),
        wildcards: Vec::new(),
        default: default.clone(),
    };
    let mut sni_keys = Vec::with_capacity(settings.sni.len());
    for sni in &settings.sni {
        let key = certs::load_certified_key(&sni.cert, &sni.key).map_err(|e| e.to_string())?;
        sni_keys.push((sni.hosts.as_slice(), key.clone()));
        for host in &sni.hosts {
            match host.strip_prefix("*.") {
                Some(suffix) => resolver.wildcards.push((format!(".{suffix}"), key.clone())),
                None => {
                    resolver.by_name.insert(host.clone(), key.clone());
                }
            }
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::Tls12 => &[&TLS13, &TLS12],
        TlsVersion::Tls13 => &[&TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match &settings.client_ca {
        Some(bundle) => builder.with_client_cert_verifier(client_auth::verifier(bundle, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // TLS 1.2: our cipher-suite order (AEAD, forward secrecy first) wins over the client's, so a
    // client preferring a weaker suite cannot pick it (SPEC §8.11; testssl "server cipher order").
    config.ignore_client_order = true;
    let sni_keys: Vec<_> = sni_keys.iter().map(|(h, k)| (*h, &**k)).collect();
    let certificates = expiry::served(&default, &sni_keys)?;
    Ok(Served {
        config: Arc::new(config),
        certificates,
    })
}

/// Generates the default certificate if neither file exists; refuses if only one does (never
/// overwrite half of an operator's pair).
fn ensure_default_certificate(settings: &TlsSettings) -> Result<(), String> {
    match (settings.cert.exists(), settings.key.exists()) {
        (true, true) => Ok(()),
        (false, false) => {
            let generated =
                self_signed::generate(&settings.self_signed_hosts, &settings.cert, &settings.key)?;
            tracing::warn!(
                cert = %settings.cert.display(),
                fingerprint = %generated.fingerprint,
                hosts = settings.self_signed_hosts.join(","),
                "generated a self-signed certificate; replace it with a real one for production"
            );
            Ok(())
        }
        (true, false) => Err(format!(
            "{}: key file missing (certificate {} exists)",
            settings.key.display(),
            settings.cert.display()
        )),
        (false, true) => Err(format!(
            "{}: certificate file missing (key {} exists)",
            settings.cert.display(),
            settings.key.display()
        )),
    }
}

/// Picks a certificate by SNI: exact name, then `*.suffix` (one label), then the default.
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// `(".example.com", key)` for `*.example.com`.
    wildcards: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
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
