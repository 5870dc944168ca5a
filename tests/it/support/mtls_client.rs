//! Client certificates for mTLS tests: client CAs made with rcgen, client certificates they sign
//! (URI SAN, DNS SAN or CN only), and clients that present one while trusting the gateway's test
//! CA.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::client::{Proto, connect_tls, provider};
use super::{Body, Client, certs, within};

/// A CA that signs client certificates.
pub struct ClientCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate as PEM (what `[tls] client_ca` holds).
    pub pem: String,
}

/// What a client certificate names.
#[derive(Clone, Copy, Default)]
pub struct Names<'a> {
    pub uri: Option<&'a str>,
    pub dns: Option<&'a str>,
    pub cn: Option<&'a str>,
}

/// A client certificate and its key.
pub struct ClientId {
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl ClientCa {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> ClientCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        ClientCa { issuer, pem }
    }

    /// A client certificate (EKU `clientAuth`) for `names`, signed by this CA.
    pub fn issue(&self, names: Names<'_>) -> ClientId {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = names.cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        if let Some(uri) = names.uri {
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().unwrap()));
        }
        if let Some(dns) = names.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.try_into().unwrap()));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        ClientId {
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A client certificate with a URI SAN (and a CN that must not be used).
    pub fn issue_uri(&self, uri: &str) -> ClientId {
        self.issue(Names {
            uri: Some(uri),
            cn: Some("not-the-subject"),
            ..Names::default()
        })
    }
}

impl ClientId {
    /// A rustls client config presenting this certificate, trusting the gateway's test CA,
    /// offering `alpn` and `versions`.
    pub fn tls_config(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(certs().ca_der.clone()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![self.der.clone()], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// An HTTP/1.1 client presenting this certificate (a fresh connection per request).
    pub fn h1(&self, addr: SocketAddr) -> Client {
        Client::new(
            addr,
            Proto::H1,
            self.tls_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
        )
    }

    /// An h2 client presenting this certificate.
    pub fn h2(&self, addr: SocketAddr) -> Client {
        Client::new(
            addr,
            Proto::H2,
            self.tls_config(&[b"h2"], rustls::ALL_VERSIONS),
        )
    }

    /// An HTTP/1.1 client presenting this certificate over TLS 1.2 only (where a refused client
    /// certificate fails the client's own handshake).
    pub fn h1_tls12(&self, addr: SocketAddr) -> Client {
        Client::new(
            addr,
            Proto::H1,
            self.tls_config(&[b"http/1.1"], &[&rustls::version::TLS12]),
        )
    }

    /// One HTTP/1.1 keep-alive connection presenting this certificate, kept open for several
    /// requests.
    pub async fn keep_alive(&self, addr: SocketAddr) -> KeptConnection {
        let tls = within(
            "mTLS connect",
            connect_tls(
                addr,
                "localhost",
                self.tls_config(&[b"http/1.1"], rustls::ALL_VERSIONS),
            ),
        )
        .await
        .unwrap();
        let (sender, conn) = within(
            "HTTP/1.1 handshake",
            hyper::client::conn::http1::handshake(TokioIo::new(tls)),
        )
        .await
        .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        KeptConnection {
            sender,
            authority: format!("localhost:{}", addr.port()),
        }
    }
}

/// An open HTTP/1.1 connection that serves request after request.
pub struct KeptConnection {
    sender: SendRequest<Body>,
    authority: String,
}

impl KeptConnection {
    /// `GET path` on this connection.
    pub async fn get(&mut self, path: &str) -> super::Resp {
        within("keep-alive connection ready", self.sender.ready())
            .await
            .expect("connection still open");
        let req = Request::get(path)
            .header("host", &self.authority)
            .body(super::empty())
            .unwrap();
        let resp = within("keep-alive response", self.sender.send_request(req))
            .await
            .expect("response on the open connection");
        super::Resp::collect(resp).await
    }
}
