//! A test certificate authority and the leaf certificates the gateway serves, made once per test
//! process with rcgen and written into each gateway's temp dir.

use std::path::Path;
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// The host name the `[[tls.sni]]` certificate is issued for.
pub const SNI_HOST: &str = "api.example.test";

/// One PEM certificate with its key and DER form.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

/// The test CA plus two leaves it signed: the default one (`localhost`, `127.0.0.1`) and the
/// one for [`SNI_HOST`].
pub struct TestCerts {
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub default: Leaf,
    pub sni: Leaf,
}

/// The process-wide test certificates (generating keys once keeps the tests fast).
pub fn certs() -> &'static TestCerts {
    static CERTS: OnceLock<TestCerts> = OnceLock::new();
    CERTS.get_or_init(generate)
}

fn generate() -> TestCerts {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gatehouse test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let leaf = |names: &[&str]| {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &*ca).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    };

    TestCerts {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        default: leaf(&["localhost", "127.0.0.1"]),
        sni: leaf(&[SNI_HOST]),
    }
}

impl TestCerts {
    /// Writes `certs/{tls,sni,ca}.{crt,key}` under `dir`.
    pub fn write_into(&self, dir: &Path) {
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::write(certs.join("tls.crt"), &self.default.cert_pem).unwrap();
        std::fs::write(certs.join("tls.key"), &self.default.key_pem).unwrap();
        std::fs::write(certs.join("sni.crt"), &self.sni.cert_pem).unwrap();
        std::fs::write(certs.join("sni.key"), &self.sni.key_pem).unwrap();
        std::fs::write(certs.join("ca.crt"), &self.ca_pem).unwrap();
    }
}

/// Lower-case hex SHA-256 of a DER certificate (what `openssl x509 -fingerprint -sha256` hashes).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The first certificate in a PEM file.
pub fn first_cert_in(path: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(path)
        .unwrap_or_else(|e| panic!("reading certificate {}: {e}", path.display()));
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap_or_else(|| panic!("no certificate in {}", path.display()))
        .unwrap()
}
