//! SPEC §8.11 (issue 9, fault 11): the server's TLS 1.2 cipher-suite order wins, and a client
//! cannot grow the log with per-handshake warnings (rustls warned on every ClientHello carrying
//! an IP address as SNI).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring::cipher_suite;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::client::connect_tls;
use crate::support::gateway::compose_config;
use crate::support::{TestGateway, certs, static_route_toml, within};

fn ping_route() -> String {
    static_route_toml("/ping", "respond = { status = 200, body = \"pong\" }")
}

/// A TLS 1.2-only client that prefers ChaCha20 over AES-128-GCM (as some mobile clients do).
fn chacha_first_client() -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    let mut roots = RootCertStore::empty();
    roots.add(certs().ca_der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_uses_the_servers_cipher_order() {
    let gw = TestGateway::start(&ping_route()).await;
    let tls = within(
        "TLS 1.2 handshake",
        connect_tls(gw.https, "localhost", chacha_first_client()),
    )
    .await
    .unwrap();
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    assert!(
        matches!(
            suite,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        ),
        "the server prefers AES-GCM; the client's ChaCha20-first order won: {suite:?}"
    );
}

/// A minimal TLS ClientHello whose SNI extension carries `name` (which may be an IP address,
/// as no conforming client sends but any attacker can).
fn client_hello_with_sni(name: &str) -> Vec<u8> {
    let name = name.as_bytes();
    let len16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&len16(name.len() + 3)); // server_name_list
    sni.push(0); // host_name
    sni.extend_from_slice(&len16(name.len()));
    sni.extend_from_slice(name);
    let mut extensions = vec![0, 0]; // server_name
    extensions.extend_from_slice(&len16(sni.len()));
    extensions.extend_from_slice(&sni);
    let mut body = vec![3, 3]; // TLS 1.2
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0, 2, 0xc0, 0x2b]); // ECDHE_ECDSA_AES_128_GCM
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&len16(extensions.len()));
    body.extend_from_slice(&extensions);
    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&len16(handshake.len()));
    record.extend_from_slice(&handshake);
    record
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The real binary at its default log level (no `RUST_LOG`): 50 ClientHellos with an IP address
/// as SNI add no line to its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_address_sni_is_not_logged_per_handshake() {
    let dir = tempfile::tempdir().unwrap();
    certs().write_into(dir.path());
    let (https, admin) = (free_addr(), free_addr());
    let config = compose_config(&format!(
        "[server]\nlisten = \"{https}\"\nadmin_listen = \"{admin}\"\n{}",
        ping_route()
    ));
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(&config_path, config).unwrap();
    let (out, err) = (dir.path().join("out.log"), dir.path().join("err.log"));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["run", "-c"])
        .arg(&config_path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    within("gatehouse to listen", async {
        while TcpStream::connect(https).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await; // bounded poll of a subprocess
        }
    })
    .await;
    let output =
        || std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
    let hello = client_hello_with_sni("127.0.0.1");
    for _ in 0..50 {
        let mut tcp = TcpStream::connect(https).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        let mut answer = Vec::new();
        // The gateway answers (ServerHello or alert) and the handshake goes nowhere; either way
        // the ClientHello has been parsed once something comes back.
        let _ = within("an answer to the ClientHello", tcp.read_buf(&mut answer)).await;
        assert!(!answer.is_empty(), "the ClientHello was answered");
    }
    // Control: a normal request is still logged (one access line), so the output is captured.
    let gw_client = crate::support::Client::h1(https);
    assert_eq!(gw_client.get("/ping").await.status, 200);
    within("the access line", async {
        while !output().contains("\"/ping\"") {
            tokio::time::sleep(Duration::from_millis(20)).await; // bounded poll of a file
        }
    })
    .await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let text = output();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("SNI") || l.contains("rustls"))
        .collect();
    assert!(lines.is_empty(), "per-handshake lines: {lines:#?}");
}

const HSTS: &str = "strict-transport-security";

/// A gateway with a public proxy route to an upstream answering `/own` with its own HSTS
/// policy, and a plain listener in `serve` mode; `server_extra` goes into `[server]`.
async fn hsts_gateway(server_extra: &str) -> (TestGateway, crate::support::Upstream) {
    let up = crate::support::Upstream::spawn(|req| {
        let mut resp = http::Response::builder();
        if req.uri.ends_with("/own") {
            resp = resp.header(HSTS, "max-age=60");
        }
        resp.body(crate::support::full("up")).unwrap()
    })
    .await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         plain_listen = \"127.0.0.1:0\"\nplain_mode = \"serve\"\n{server_extra}\n{}{}{}",
        crate::support::upstream_toml("up", &[up.addr], ""),
        crate::support::route_toml("/api", "up", ""),
        ping_route()
    );
    (TestGateway::start(&config).await, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_responses_carry_hsts_unless_the_upstream_set_one() {
    let (gw, _up) = hsts_gateway("").await;
    for path in ["/ping", "/api/x", "/nowhere"] {
        let resp = gw.get(path).await;
        assert_eq!(resp.header(HSTS), Some("max-age=31536000"), "{path}");
    }
    let own = gw.get("/api/own").await;
    let own: Vec<_> = own.headers.get_all(HSTS).iter().collect();
    assert_eq!(own, ["max-age=60"], "the upstream's policy wins, alone");
    let plain = crate::support::client::get_plain(gw.plain.unwrap(), "/ping").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header(HSTS), None, "never over cleartext");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_0s_turns_it_off() {
    let (gw, _up) = hsts_gateway("hsts = \"0s\"").await;
    assert_eq!(gw.get("/ping").await.header(HSTS), None);
    assert_eq!(gw.get("/api/own").await.header(HSTS), Some("max-age=60"));
}
