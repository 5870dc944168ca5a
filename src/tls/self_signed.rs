//! A self-signed certificate for first start (and `gatehouse cert self-signed`): generated with
//! rcgen, written atomically (key file mode 0600), fingerprint logged so a client can pin it.

use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use time::{Duration, OffsetDateTime};

use super::certs::fingerprint;
use crate::files::write_atomically;

/// Validity of a generated certificate.
const VALIDITY_DAYS: i64 = 365;

/// What was generated.
#[derive(Debug)]
pub(crate) struct Generated {
    /// SHA-256 fingerprint of the certificate (colon-separated hex).
    pub(crate) fingerprint: String,
}

/// Generates a certificate for `hosts` (DNS names or IP addresses) and writes `cert` and `key`.
///
/// # Errors
/// No hosts, an invalid name, or a write failure.
pub(crate) fn generate(hosts: &[String], cert: &Path, key: &Path) -> Result<Generated, String> {
    if hosts.is_empty() {
        return Err(
            "no host names to put in a self-signed certificate (tls.self_signed_hosts is empty)"
                .into(),
        );
    }
    let mut params =
        CertificateParams::new(hosts.to_vec()).map_err(|e| format!("invalid host name: {e}"))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, hosts[0].clone());
    name.push(DnType::OrganizationName, "gatehouse self-signed");
    params.distinguished_name = name;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(VALIDITY_DAYS);
    let key_pair = KeyPair::generate().map_err(|e| format!("key generation failed: {e}"))?;
    let certificate = params
        .self_signed(&key_pair)
        .map_err(|e| format!("signing failed: {e}"))?;
    write_atomically(cert, certificate.pem().as_bytes(), 0o644)?;
    write_atomically(key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    Ok(Generated {
        fingerprint: fingerprint(certificate.der()),
    })
}
