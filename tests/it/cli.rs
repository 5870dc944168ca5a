//! The command line (SPEC §1): `check` reports every config error as `file: key: reason` and
//! exits 1, passes the shipped Keptn example, and `cert self-signed` writes a usable pair.

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::support::client::{connect_tls, provider, tls_config_trusting};
use crate::support::{certs, fingerprint, first_cert_in, within};

async fn gatehouse(args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    within(&format!("gatehouse {}", args.join(" ")), output)
        .await
        .expect("gatehouse runs")
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A valid config (certs written next to it) with `routes` and `limits` filled in.
fn write_config(dir: &Path, limits: &str, routes: &str) -> std::path::PathBuf {
    certs().write_into(dir);
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [limits]\n{limits}\n\n\
         [tls]\ncert = \"certs/tls.crt\"\nkey = \"certs/tls.key\"\n\n\
         [[upstreams]]\nname = \"api-service\"\ntargets = [\"127.0.0.1:9\"]\n\n{routes}"
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    path
}

const THREE_ERRORS_ROUTES: &str = "[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\n\
     auth = [\"public\"]\nstrip_prefx = true\n\n\
     [[routes]]\npath = \"/other\"\nupstream = \"api-servce\"\nauth = [\"public\"]\n";

/// The line naming `key`, checked to have the `file: key: reason` shape.
fn line_for<'a>(text: &'a str, key: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no line names {key:?} in:\n{text}"));
    assert!(
        line.contains("gateway.toml"),
        "line does not name the file: {line:?}"
    );
    let (_, reason) = line
        .split_once(&format!("{key}:"))
        .unwrap_or_else(|| panic!("line is not `file: {key}: reason`: {line:?}"));
    assert!(!reason.trim().is_empty(), "no reason given: {line:?}");
    line
}

fn assert_three_errors(text: &str) {
    let unknown = line_for(text, "routes[0].strip_prefx");
    let duration = line_for(text, "limits.idle_timeout");
    let upstream = line_for(text, "routes[1].upstream");
    assert!(
        upstream.contains("api-servce"),
        "names the unknown upstream: {upstream:?}"
    );
    assert!(
        unknown != duration && duration != upstream && unknown != upstream,
        "one error per line:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_all_three_errors_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "idle_timeout = \"5 parsecs\"",
        THREE_ERRORS_ROUTES,
    );

    let output = gatehouse(&["check", "-c", path.to_str().unwrap()]).await;
    let text = all_output(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_three_errors(&text);
}

#[test]
fn config_load_collects_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "idle_timeout = \"5 parsecs\"",
        THREE_ERRORS_ROUTES,
    );

    let errors = gatehouse::config::load(&path).expect_err("three errors");
    assert_three_errors(&errors.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "idle_timeout = \"60s\"",
        "[[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = [\"public\"]\nstrip_prefix = true\n",
    );

    let output = gatehouse(&["check", "-c", path.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_the_keptn_example() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/keptn.toml");

    let output = gatehouse(&["check", "-c", path]).await;
    assert_eq!(output.status.code(), Some(0), "{}", all_output(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_on_a_missing_file_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");

    let output = gatehouse(&["check", "-c", path.to_str().unwrap()]).await;
    let text = all_output(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("absent.toml"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_flag_is_a_usage_error_exit_2() {
    let output = gatehouse(&["check", "--no-such-flag"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", all_output(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_self_signed_writes_a_usable_pair_and_prints_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");

    let output = gatehouse(&[
        "cert",
        "self-signed",
        "--host",
        "localhost",
        "--host",
        "127.0.0.1",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let text = all_output(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");

    let cert = first_cert_in(&out.join("tls.crt"));
    let printed = String::from_utf8_lossy(&output.stdout)
        .to_ascii_lowercase()
        .replace(':', "");
    assert!(
        printed.contains(&fingerprint(&cert)),
        "stdout shows the SHA-256 fingerprint {}:\n{text}",
        fingerprint(&cert)
    );

    // The pair works: serve it and verify it for both hosts.
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(out.join("tls.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(out.join("tls.key")).expect("tls.key is a PEM key");
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("key matches certificate");
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        }
    });
    for host in ["localhost", "127.0.0.1"] {
        within(
            "handshake with the generated certificate",
            connect_tls(addr, host, tls_config_trusting(std::slice::from_ref(&cert))),
        )
        .await
        .unwrap_or_else(|e| panic!("generated certificate not valid for {host}: {e}"));
    }
    within("test TLS server", accept).await.unwrap();
}
