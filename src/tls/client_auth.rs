//! Client certificates at the TLS layer (`[tls] client_ca`): the CA bundle becomes a rustls
//! client-certificate verifier, and the verified leaf of a connection becomes a [`ClientCert`].
//!
//! Verification is optional per connection (`allow_unauthenticated`): a client that sends no
//! certificate completes the handshake and can use public and token routes; only routes whose
//! `auth` lists `"mtls"` need one (see [`crate::auth::mtls`]). A client that *does* send one must
//! send one the bundle vouches for: a certificate from another CA, an expired one, or one whose
//! extended key usage excludes `clientAuth` fails the handshake (rustls sends a TLS alert), so no
//! request of that connection ever reaches the pipeline.
//!
//! The verifier lives in the runtime's `ServerConfig`: a reload with a new bundle changes it for
//! new handshakes, while an open connection keeps the identity it proved at its own handshake.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::certs;

/// Longest subject accepted from a certificate; a longer one is no usable identity.
pub(crate) const MAX_SUBJECT_LEN: usize = 1024;

/// Reads the CA bundle: every certificate in it must parse as a trust anchor.
///
/// # Errors
/// A message naming the file: unreadable, broken PEM, no certificate, or a certificate that
/// cannot be a trust anchor (its position in the bundle is named).
pub(crate) fn load_bundle(path: &Path) -> Result<RootCertStore, String> {
    let bundle = certs::load_chain(path).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    for (i, der) in bundle.into_iter().enumerate() {
        roots.add(der).map_err(|e| {
            format!(
                "{}: certificate #{} is not a usable CA certificate: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(roots)
}

/// The client-certificate verifier for `[tls] client_ca`: certificates must chain to the bundle,
/// but sending none is allowed.
///
/// # Errors
/// As [`load_bundle`].
pub(crate) fn verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let roots = load_bundle(path)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Where a certificate's subject came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubjectSource {
    /// The first `uniformResourceIdentifier` SAN (a SPIFFE ID, typically).
    Uri,
    /// The first `dNSName` SAN.
    Dns,
    /// The subject's common name.
    CommonName,
}

/// The identity a verified client certificate proves, captured once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCert {
    /// First URI SAN, else first DNS SAN, else CN: printable ASCII, never empty.
    pub(crate) subject: Arc<str>,
    /// Which of the three it is.
    pub(crate) source: SubjectSource,
    /// The certificate's `notAfter`.
    pub(crate) not_after: Option<OffsetDateTime>,
}

impl ClientCert {
    /// Reads the identity of a DER certificate. Never panics, whatever the bytes.
    ///
    /// # Errors
    /// Why the certificate yields no usable subject (not DER, no SAN or CN, a subject that is
    /// empty, too long, or not printable ASCII).
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, &'static str> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| "certificate does not parse")?;
        let (subject, source) = subject_of(&cert)?;
        if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
            return Err("certificate subject is empty or too long");
        }
        // It becomes `x-auth-subject` and a log field: printable ASCII only.
        if !subject.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err("certificate subject is not printable ASCII");
        }
        Ok(Self {
            subject: Arc::from(subject),
            source,
            not_after: Some(cert.validity().not_after.to_datetime()),
        })
    }
}

/// First URI SAN, else first DNS SAN, else the first CN.
fn subject_of<'a>(cert: &'a X509Certificate<'a>) -> Result<(&'a str, SubjectSource), &'static str> {
    let sans = cert
        .subject_alternative_name()
        .map_err(|_| "certificate has a malformed subjectAltName")?;
    let names = sans
        .map(|ext| ext.value.general_names.as_slice())
        .unwrap_or_default();
    let first = |want: SubjectSource| {
        names.iter().find_map(|name| match (name, want) {
            (GeneralName::URI(uri), SubjectSource::Uri) => Some(*uri),
            (GeneralName::DNSName(dns), SubjectSource::Dns) => Some(*dns),
            _ => None,
        })
    };
    if let Some(uri) = first(SubjectSource::Uri) {
        return Ok((uri, SubjectSource::Uri));
    }
    if let Some(dns) = first(SubjectSource::Dns) {
        return Ok((dns, SubjectSource::Dns));
    }
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(|cn| (cn, SubjectSource::CommonName))
        .ok_or("certificate has no URI or DNS subjectAltName and no common name")
}

/// The identity of a connection's verified client certificate chain (leaf first), if it sent
/// one. Called once per connection after the handshake; a certificate that verified but names no
/// usable subject gives no identity (logged at debug level: a client cannot make the gateway log
/// more per handshake).
pub(crate) fn identify(chain: Option<&[CertificateDer<'_>]>) -> Option<Arc<ClientCert>> {
    let leaf = chain?.first()?;
    match ClientCert::from_der(leaf) {
        Ok(cert) => {
            tracing::debug!(subject = %cert.subject, "client certificate verified");
            Some(Arc::new(cert))
        }
        Err(reason) => {
            tracing::debug!(reason, "client certificate verified but gives no identity");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn cert(sans: Vec<SanType>, cn: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(text: &str) -> SanType {
        SanType::URI(text.try_into().unwrap())
    }

    fn dns(text: &str) -> SanType {
        SanType::DnsName(text.try_into().unwrap())
    }

    #[test]
    fn uri_san_wins_then_dns_then_cn() {
        let both = cert(
            vec![dns("svc.mesh.local"), uri("spiffe://mesh/ns/a/sa/b")],
            Some("cn"),
        );
        let id = ClientCert::from_der(&both).unwrap();
        assert_eq!(&*id.subject, "spiffe://mesh/ns/a/sa/b");
        assert_eq!(id.source, SubjectSource::Uri);
        assert!(id.not_after.is_some());

        let dns_only = cert(vec![dns("a.mesh.local"), dns("b.mesh.local")], Some("cn"));
        let id = ClientCert::from_der(&dns_only).unwrap();
        assert_eq!(
            (&*id.subject, id.source),
            ("a.mesh.local", SubjectSource::Dns)
        );

        let cn_only = cert(Vec::new(), Some("deploy-bot"));
        let id = ClientCert::from_der(&cn_only).unwrap();
        assert_eq!(
            (&*id.subject, id.source),
            ("deploy-bot", SubjectSource::CommonName)
        );
    }

    #[test]
    fn no_usable_subject_is_an_error_never_a_panic() {
        assert!(ClientCert::from_der(&cert(Vec::new(), None)).is_err());
        assert!(ClientCert::from_der(&cert(Vec::new(), Some("bad\u{7}bell"))).is_err());
        assert!(ClientCert::from_der(&cert(Vec::new(), Some("caf\u{e9}"))).is_err());
        let long = "x".repeat(MAX_SUBJECT_LEN + 1);
        assert!(ClientCert::from_der(&cert(Vec::new(), Some(&long))).is_err());
        let good = cert(vec![uri("spiffe://mesh/x")], None);
        // Every truncation and a few bit flips: an error or an identity, never a panic.
        for len in 0..good.len() {
            let _ = ClientCert::from_der(&good[..len]);
        }
        for i in (0..good.len()).step_by(7) {
            let mut flipped = good.clone();
            flipped[i] ^= 0x5a;
            let _ = ClientCert::from_der(&flipped);
        }
        assert!(identify(None).is_none());
        assert!(identify(Some(&[])).is_none());
    }

    #[test]
    fn bundle_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = load_bundle(&empty).unwrap_err();
        assert!(
            err.contains("empty.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        assert!(load_bundle(&missing).unwrap_err().contains("missing.pem"));
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_bundle(&junk).unwrap_err();
        assert!(err.contains("junk.pem"), "{err}");
    }
}
