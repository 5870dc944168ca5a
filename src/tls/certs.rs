//! PEM loading: certificate chains and private keys (PKCS#8, PKCS#1, SEC1), checked so that the
//! key really belongs to the leaf certificate before anything is served with them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// A certificate or key file could not be used. Messages name the file, never key material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    /// The file could not be read or holds no usable PEM block.
    #[error("{}: {reason}", path.display())]
    Unreadable {
        /// The file (`[tls]` reports the problem at the key that names it).
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key}: private key does not match certificate {cert}")]
    Mismatch {
        /// Certificate file.
        cert: String,
        /// Key file.
        key: String,
    },
}

fn unreadable(path: &Path, reason: impl Into<String>) -> CertError {
    CertError::Unreadable {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads every certificate in a PEM file, leaf first.
///
/// # Errors
/// Unreadable file, broken PEM, or no certificate in it.
pub(crate) fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = std::fs::read(path).map_err(|e| unreadable(path, format!("cannot read: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(path, format!("invalid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(unreadable(path, "no CERTIFICATE block found"));
    }
    Ok(chain)
}

/// Reads the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in a PEM file.
///
/// # Errors
/// Unreadable file or no supported key in it.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = std::fs::read(path).map_err(|e| unreadable(path, format!("cannot read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        unreadable(
            path,
            "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block found",
        )
    })
}

/// Loads a chain and its key and checks that they belong together.
///
/// # Errors
/// Unreadable files, an unsupported key type, or a key that does not match the leaf.
pub(super) fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = load_chain(cert)?;
    let der = load_key(key)?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|_| unreadable(key, "unsupported private key type"))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| CertError::Mismatch {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
    })?;
    Ok(Arc::new(certified))
}

/// SHA-256 of a DER certificate as colon-separated upper-case hex, as browsers show it.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{byte:02X}"));
    }
    out
}
