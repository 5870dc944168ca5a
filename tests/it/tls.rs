//! TLS (SPEC §2 `[tls]`): ALPN h2/http1.1, self-signed generation when cert/key are missing,
//! `[[tls.sni]]` selection, `min_version`, and old protocol versions refused.

use std::sync::Arc;

use http::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::client::{
    Proto, connect_tls, tls_config, tls_config_accept_any, tls_config_trusting,
};
use crate::support::{
    Client, SNI_HOST, TestGateway, certs, fingerprint, first_cert_in, static_route_toml, within,
};

fn ping_route() -> String {
    static_route_toml("/ping", "respond = { status = 200, body = \"pong\" }")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_gets_http2_and_http11_gets_http11() {
    let gw = TestGateway::start(&ping_route()).await;

    let h2 = gw.h2_client();
    let resp = h2.get("/ping").await;
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(resp.text(), "pong");
    assert_eq!(h2.last_session().alpn.as_deref(), Some(&b"h2"[..]));

    let h1 = gw.client();
    let resp = h1.get("/ping").await;
    assert_eq!(resp.version, Version::HTTP_11);
    assert_eq!(resp.text(), "pong");
    assert_eq!(h1.last_session().alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_alpn_gets_http11() {
    let gw = TestGateway::start(&ping_route()).await;
    let client = Client::new(gw.https, Proto::H1, tls_config(&[], rustls::ALL_VERSIONS));

    let resp = client.get("/ping").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.version, Version::HTTP_11);
    assert_eq!(client.last_session().alpn, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_cert_and_key_are_generated_self_signed() {
    let config = format!(
        "[tls]\ncert = \"generated/tls.crt\"\nkey = \"generated/tls.key\"\n\
         self_signed_hosts = [\"localhost\", \"127.0.0.1\"]\n{}",
        ping_route()
    );
    let gw = TestGateway::start(&config).await;

    let cert_path = gw.file("generated/tls.crt");
    let key_path = gw.file("generated/tls.key");
    assert!(key_path.is_file(), "key written to {}", key_path.display());
    let key_pem = std::fs::read_to_string(&key_path).unwrap();
    assert!(
        key_pem.contains("PRIVATE KEY-----"),
        "key file is PEM: {key_pem:.40}"
    );
    let written = first_cert_in(&cert_path);

    // What the listener serves is the certificate that was written.
    let any = Client::new(gw.https, Proto::H1, tls_config_accept_any());
    assert_eq!(any.get("/ping").await.text(), "pong");
    let served = any.last_session().peer_cert.expect("server certificate");
    assert_eq!(fingerprint(&served), fingerprint(&written));

    // And it is valid for the configured hosts.
    let trusting = Client::new(
        gw.https,
        Proto::H1,
        tls_config_trusting(std::slice::from_ref(&written)),
    );
    assert_eq!(
        trusting.get("/ping").await.status,
        200,
        "valid for localhost"
    );
    let by_ip = Client::new(gw.https, Proto::H1, tls_config_trusting(&[written]))
        .with_server_name("127.0.0.1");
    assert_eq!(by_ip.get("/ping").await.status, 200, "valid for 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_matching_extra_certificate() {
    let config = format!(
        "[tls]\ncert = \"certs/tls.crt\"\nkey = \"certs/tls.key\"\n\n\
         [[tls.sni]]\nhosts = [\"{SNI_HOST}\"]\ncert = \"certs/sni.crt\"\nkey = \"certs/sni.key\"\n{}",
        ping_route()
    );
    let gw = TestGateway::start(&config).await;
    let certs = certs();

    let sni = gw.client().with_server_name(SNI_HOST);
    assert_eq!(sni.get("/ping").await.text(), "pong");
    assert_eq!(
        sni.last_session().peer_cert.as_ref(),
        Some(&certs.sni.der),
        "SNI {SNI_HOST} gets its own certificate"
    );

    let default = gw.client();
    assert_eq!(default.get("/ping").await.text(), "pong");
    assert_eq!(
        default.last_session().peer_cert.as_ref(),
        Some(&certs.default.der)
    );

    // An IP address sends no SNI at all: the default certificate.
    let no_sni = gw.client().with_server_name("127.0.0.1");
    assert_eq!(no_sni.get("/ping").await.text(), "pong");
    assert_eq!(
        no_sni.last_session().peer_cert.as_ref(),
        Some(&certs.default.der)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_min_version_accepts_tls12_and_tls13() {
    let gw = TestGateway::start(&ping_route()).await;

    for (version, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let client = Client::new(gw.https, Proto::H1, tls_config(&[b"http/1.1"], &[version]));
        assert_eq!(client.get("/ping").await.status, 200);
        assert_eq!(client.last_session().version, Some(want));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_13_refuses_a_tls12_only_client() {
    let config = format!(
        "[tls]\ncert = \"certs/tls.crt\"\nkey = \"certs/tls.key\"\nmin_version = \"1.3\"\n{}",
        ping_route()
    );
    let gw = TestGateway::start(&config).await;

    let tls12 = within(
        "TLS 1.2 handshake",
        connect_tls(
            gw.https,
            "localhost",
            tls_config(&[b"http/1.1"], &[&rustls::version::TLS12]),
        ),
    )
    .await;
    assert!(tls12.is_err(), "a TLS 1.2-only client must be refused");

    let tls13 = Client::new(
        gw.https,
        Proto::H1,
        tls_config(&[b"http/1.1"], &[&rustls::version::TLS13]),
    );
    assert_eq!(tls13.get("/ping").await.status, 200);
    assert_eq!(
        tls13.last_session().version,
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

/// A hand-built ClientHello with `version` as record and client version and no
/// `supported_versions` extension (so a TLS 1.3 server must treat it as that version): suites
/// old and new, SNI `localhost`, and the groups and signature schemes a TLS 1.2 server needs.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut out = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }
    fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend(with_len16(body));
        out
    }
    let host = b"localhost";
    let mut server_name = vec![0]; // host_name
    server_name.extend(with_len16(host));
    let u16s = |values: &[u16]| {
        values
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>()
    };
    let mut extensions = Vec::new();
    extensions.extend(extension(0x0000, &with_len16(&server_name)));
    extensions.extend(extension(0x000a, &with_len16(&u16s(&[0x001d, 0x0017])))); // x25519, P-256
    extensions.extend(extension(0x000b, &[1, 0])); // ec_point_formats: uncompressed
    extensions.extend(extension(
        0x000d,
        &with_len16(&u16s(&[0x0403, 0x0804, 0x0401])),
    ));

    let mut hello = version.to_vec();
    hello.extend((0..32u8).map(|i| i.wrapping_mul(37))); // random
    hello.push(0); // empty session id
    // RSA/CBC suites of the TLS 1.1 era, then ECDHE-GCM suites TLS 1.2 servers accept.
    hello.extend(with_len16(&u16s(&[0x002f, 0x0035, 0x000a, 0xc02b, 0xc02f])));
    hello.extend_from_slice(&[0x01, 0x00]); // compression: null
    hello.extend(with_len16(&extensions));

    let mut handshake = vec![0x01]; // ClientHello
    handshake.extend_from_slice(&u32::try_from(hello.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);

    let mut record = vec![0x16, version[0], version[1]]; // handshake record
    record.extend(with_len16(&handshake));
    record
}

/// Sends a hand-built ClientHello and returns the first byte of the answer (None if the
/// server closed or reset without answering).
async fn first_answer_byte(gw: &TestGateway, version: [u8; 2]) -> Option<u8> {
    let mut tcp = within("TCP connect", TcpStream::connect(gw.https))
        .await
        .unwrap();
    within("sending ClientHello", tcp.write_all(&client_hello(version)))
        .await
        .unwrap();
    let mut first = [0u8; 1];
    match within("server answer to a ClientHello", tcp.read(&mut first)).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(first[0]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls11_client_hello_is_refused() {
    let gw = TestGateway::start(&ping_route()).await;

    let answer = first_answer_byte(&gw, [0x03, 0x02]).await;
    assert!(
        answer.is_none() || answer == Some(0x15),
        "expected an alert record (0x15) or a close, got record type {answer:#04x?} (0x16 = ServerHello)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_client_hello_of_the_same_shape_gets_a_server_hello() {
    // The control for the test above: the same hand-built hello, only the version differs,
    // is answered with a handshake record, so the refusal is about the version.
    let gw = TestGateway::start(&ping_route()).await;

    assert_eq!(first_answer_byte(&gw, [0x03, 0x03]).await, Some(0x16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_is_rejected_by_a_verifying_client() {
    // Sanity check of the harness: the test client really verifies, so the positive TLS
    // tests above mean something.
    let gw = TestGateway::start(&ping_route()).await;
    let other_root = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let config = tls_config_trusting(&[other_root.cert.der().clone()]);

    let result = within(
        "handshake with a client trusting another root",
        connect_tls(gw.https, "localhost", Arc::clone(&config)),
    )
    .await;
    assert!(result.is_err());
}
