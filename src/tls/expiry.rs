//! When each served certificate expires, for `gatehouse_tls_cert_expiry_timestamp_seconds{host}`.
//!
//! Read from the very certificates a [`super::build`] loaded, so the metric always describes what
//! new handshakes get, and follows every reload with the runtime it belongs to.

use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;

/// One served certificate: the host label and its leaf's `notAfter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertExpiry {
    /// An `[[tls.sni]]` host as configured, or for the default certificate its first DNS
    /// subject alternative name (`default` when it has none).
    pub(crate) host: String,
    /// The leaf's `notAfter` as Unix seconds.
    pub(crate) not_after: i64,
}

/// The default host label when the default certificate names no DNS host.
pub(crate) const DEFAULT_HOST: &str = "default";

/// Expiry of the default certificate and of each SNI host's certificate. An SNI host that equals
/// the default certificate's label replaces it: that name is answered with the SNI certificate.
///
/// # Errors
/// A leaf that is not a parsable X.509 certificate (rustls only checked that the key matches).
pub(crate) fn served(
    default: &CertifiedKey,
    sni: &[(&[String], &CertifiedKey)],
) -> Result<Vec<CertExpiry>, String> {
    let (first_name, not_after) = leaf_facts(default)?;
    let mut out = vec![CertExpiry {
        host: first_name.unwrap_or_else(|| DEFAULT_HOST.to_owned()),
        not_after,
    }];
    for (hosts, key) in sni {
        let (_, not_after) = leaf_facts(key)?;
        for host in *hosts {
            out.retain(|e| &e.host != host);
            out.push(CertExpiry {
                host: host.clone(),
                not_after,
            });
        }
    }
    Ok(out)
}

/// The leaf's first DNS SAN and its `notAfter`.
fn leaf_facts(key: &CertifiedKey) -> Result<(Option<String>, i64), String> {
    let leaf: &CertificateDer<'_> = key
        .cert
        .first()
        .ok_or_else(|| "certificate chain is empty".to_owned())?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("certificate cannot be parsed: {e}"))?;
    let first_name = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                _ => None,
            })
        });
    Ok((first_name, cert.validity().not_after.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certified(names: &[&str], not_after: (i32, u8, u8)) -> CertifiedKey {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        CertifiedKey::new(vec![cert.der().clone()], signer)
    }

    #[test]
    fn default_is_labelled_by_its_first_name_and_sni_hosts_each_get_a_series() {
        let default = certified(&["gw.example.com", "other.example.com"], (2030, 1, 2));
        let sni = certified(&["api.example.com"], (2031, 3, 4));
        let hosts = vec![
            "api.example.com".to_owned(),
            "*.apps.example.com".to_owned(),
        ];
        let got = served(&default, &[(&hosts, &sni)]).unwrap();
        let expected = |host: &str, ts| CertExpiry {
            host: host.to_owned(),
            not_after: ts,
        };
        // 2030-01-02T00:00:00Z and 2031-03-04T00:00:00Z
        assert_eq!(
            got,
            vec![
                expected("gw.example.com", 1_893_542_400),
                expected("api.example.com", 1_930_348_800),
                expected("*.apps.example.com", 1_930_348_800),
            ]
        );
    }

    #[test]
    fn a_default_without_dns_names_is_default_and_an_sni_host_replaces_a_clash() {
        let default = certified(&[], (2030, 1, 2));
        assert_eq!(served(&default, &[]).unwrap()[0].host, DEFAULT_HOST);
        let named = certified(&["gw.example.com"], (2030, 1, 2));
        let sni = certified(&["gw.example.com"], (2031, 3, 4));
        let hosts = vec!["gw.example.com".to_owned()];
        let got = served(&named, &[(&hosts, &sni)]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].not_after, 1_930_348_800);
    }
}
