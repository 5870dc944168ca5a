//! Live reload (SPEC §5, issue 5): the folder watcher, `POST /reload` and `SIGHUP` rebuild the
//! runtime and swap it in; invalid changes are refused whole; certificates change for new
//! handshakes only; open connections, WebSockets and a client pounding the gateway never notice.
//!
//! Every wait is on the reload status (`generation`, `attempts`, `ok`) inside a timeout, except
//! for the `gatehouse run` subprocess, whose admin `/config` is polled with a deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::header::HOST;
use http::{Request, Version};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::CertificateDer;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::certs::Leaf;
use crate::support::client::{
    Proto, connect_tls, get_plain, send_plain, tls_config, tls_config_accept_any,
    tls_config_trusting,
};
use crate::support::files::{K8sVolume, LinkedConfig, save_atomically};
use crate::support::gateway::compose_config;
use crate::support::reload::{settle, wait_generation, wait_status};
use crate::support::{
    Body, Client, Resp, TestGateway, Upstream, Ws, certs, empty, fingerprint, first_cert_in,
    route_toml, static_route_toml, upstream_toml, within,
};

/// A public route answering 200 with `body`.
fn respond(path: &str, body: &str) -> String {
    static_route_toml(
        path,
        &format!("respond = {{ status = 200, body = \"{body}\" }}"),
    )
}

/// Rewrites the gateway's `gateway.toml` in place (truncate + write) with `body` composed as
/// [`TestGateway::start`] does.
fn rewrite_config(gw: &TestGateway, body: &str) {
    std::fs::write(gw.file("gateway.toml"), compose_config(body)).unwrap();
}

/// Asserts `GET path` answers 200 `body`. On failure it shows the routes of the runtime in
/// use, so a runtime swapped in with stale content (new generation, old routes) is obvious.
async fn assert_serves(gw: &TestGateway, path: &str, body: &str) {
    let resp = gw.get(path).await;
    if resp.status != 200 || resp.body != body.as_bytes() {
        let config = gw.admin_get("/config").await.json();
        panic!(
            "GET {path}: {} {:?}, expected 200 {body:?}; runtime in use: generation {}, \
             routes {}, last_reload {}",
            resp.status,
            resp.text(),
            config["generation"],
            config["routes"],
            config["last_reload"]
        );
    }
}

/// `POST /reload` on the admin listener.
async fn post_reload(admin: SocketAddr) -> Resp {
    send_plain(admin, Request::post("/reload").body(empty()).unwrap()).await
}

/// A new self-signed certificate for `localhost` and `127.0.0.1` with its key.
fn fresh_leaf() -> Leaf {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    Leaf {
        cert_pem: generated.cert.pem(),
        key_pem: generated.signing_key.serialize_pem(),
        der: generated.cert.der().clone(),
    }
}

/// `GET /ping` on a fresh connection, accepting any certificate: the leaf the gateway serves
/// to a new handshake now.
async fn served_leaf(gw: &TestGateway) -> CertificateDer<'static> {
    let client = Client::new(gw.https, Proto::H1, tls_config_accept_any());
    let resp = client.get("/ping").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "pong");
    client
        .last_session()
        .peer_cert
        .expect("the server sent a certificate")
}

/// An HTTP/1.1 keep-alive connection over TLS (trusting `config`'s roots): the sender for every
/// request on it and the certificate its handshake got.
async fn h1_keepalive(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<(http1::SendRequest<Body>, CertificateDer<'static>)> {
    let tls = within("TLS connect", connect_tls(addr, "localhost", config)).await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("the server sent a certificate")
        .clone()
        .into_owned();
    let (sender, conn) = within("HTTP/1.1 handshake", http1::handshake(TokioIo::new(tls))).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, leaf))
}

/// One h2 connection over TLS; the sender is cloned for concurrent streams.
async fn h2_connection(addr: SocketAddr) -> anyhow::Result<http2::SendRequest<Body>> {
    let tls = within(
        "TLS connect",
        connect_tls(
            addr,
            "localhost",
            tls_config(&[b"h2"], rustls::ALL_VERSIONS),
        ),
    )
    .await?;
    let (sender, conn) = within(
        "h2 handshake",
        http2::handshake(TokioExecutor::new(), TokioIo::new(tls)),
    )
    .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn h1_get(addr: SocketAddr, path: &str) -> Request<Body> {
    Request::get(path)
        .header(HOST, format!("localhost:{}", addr.port()))
        .body(empty())
        .unwrap()
}

fn h2_get(addr: SocketAddr, path: &str) -> Request<Body> {
    Request::get(format!("https://localhost:{}{path}", addr.port()))
        .version(Version::HTTP_2)
        .body(empty())
        .unwrap()
}

/// `GET path` on an open HTTP/1.1 connection.
async fn get_on(
    sender: &mut http1::SendRequest<Body>,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<Resp> {
    within("keep-alive connection ready", sender.ready()).await?;
    let resp = within(
        "keep-alive response",
        sender.send_request(h1_get(addr, path)),
    )
    .await?;
    Ok(Resp::collect(resp).await)
}

async fn assert_echoes(ws: &mut Ws, text: &str) {
    within("send text", ws.send(Message::text(text)))
        .await
        .unwrap();
    let echoed = within("echo", ws.next())
        .await
        .expect("WebSocket still open")
        .expect("WebSocket frame");
    assert_eq!(echoed, Message::text(text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_change_in_gateway_toml_is_applied_by_the_watcher() {
    let gw = TestGateway::start(&respond("/old", "old")).await;
    let before = settle(&gw).await;
    assert_eq!(gw.get("/old").await.text(), "old");
    assert_eq!(gw.get("/new").await.error(404), "no route for /new");

    rewrite_config(&gw, &respond("/new", "new"));
    let after = wait_generation(&gw, before.generation).await;

    assert_eq!(after.generation, before.generation + 1);
    assert_serves(&gw, "/new", "new").await;
    assert_eq!(gw.get("/old").await.error(404), "no route for /old");
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["generation"], after.generation);
    assert_eq!(config["content_hash"], after.content_hash.as_str());
    assert_ne!(after.content_hash, before.content_hash);
    assert_eq!(config["last_reload"]["ok"], true);
    assert_eq!(config["last_reload"]["error"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_gateway_toml_is_refused_and_the_old_routes_keep_working() {
    let gw = TestGateway::start(&respond("/old", "old")).await;
    let before = settle(&gw).await;
    let config_path = gw.file("gateway.toml");

    rewrite_config(
        &gw,
        &format!(
            "{}{}",
            respond("/old", "old"),
            route_toml("/broken", "nowhere", "")
        ),
    );
    let refused = wait_status(&gw, "the invalid change to be refused", |s| !s.ok).await;

    let error = refused
        .error
        .clone()
        .expect("a refused reload has an error");
    assert!(
        error.starts_with(&format!("{}: routes[1].upstream: ", config_path.display())),
        "the error names the file and the key: {error:?}"
    );
    assert!(
        error.contains("\"nowhere\""),
        "and the bad value: {error:?}"
    );
    assert_eq!(refused.generation, before.generation, "old runtime kept");
    assert_eq!(refused.content_hash, before.content_hash);
    assert_eq!(gw.get("/old").await.text(), "old");
    assert_eq!(
        gw.get("/broken/x").await.error(404),
        "no route for /broken/x"
    );

    let resp = post_reload(gw.admin.unwrap()).await;
    assert_eq!(resp.status, 422, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json(), json!({"ok": false, "error": error}));

    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["generation"], before.generation);
    assert_eq!(config["last_reload"]["ok"], false);
    assert_eq!(config["last_reload"]["error"], error.as_str());
    let attempts = config["last_reload"]["attempts"].as_u64().unwrap();
    assert!(
        attempts > refused.attempts,
        "the POST counted as an attempt: {config}"
    );

    rewrite_config(&gw, &respond("/new", "new"));
    let applied = wait_generation(&gw, before.generation).await;
    assert_eq!(applied.generation, before.generation + 1);
    assert_eq!(applied.error, None);
    assert_serves(&gw, "/new", "new").await;
    assert_eq!(gw.get("/old").await.error(404), "no route for /old");
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["last_reload"]["ok"], true);
    assert_eq!(config["last_reload"]["error"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_style_save_of_gateway_toml_is_picked_up() {
    let gw = TestGateway::start(&respond("/v", "one")).await;
    let mut generation = settle(&gw).await.generation;
    let path = gw.file("gateway.toml");

    // Twice: after the first rename the file is a new inode; the folder watch must still see
    // the second save.
    for body in ["two", "three"] {
        save_atomically(&path, compose_config(&respond("/v", body)));
        generation = wait_generation(&gw, generation).await.generation;
        assert_serves(&gw, "/v", body).await;
    }
    assert_eq!(generation, 3);
    let leftovers: Vec<_> = std::fs::read_dir(gw.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".swp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files renamed away: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_cert_reaches_new_handshakes_while_a_keepalive_connection_keeps_working() {
    let gw = TestGateway::start(&respond("/ping", "pong")).await;
    let before = settle(&gw).await;
    let old = &certs().default;
    let (mut kept, kept_leaf) =
        h1_keepalive(gw.https, tls_config(&[b"http/1.1"], rustls::ALL_VERSIONS))
            .await
            .unwrap();
    assert_eq!(kept_leaf, old.der);
    assert_eq!(
        get_on(&mut kept, gw.https, "/ping").await.unwrap().text(),
        "pong"
    );

    let new = fresh_leaf();
    std::fs::write(gw.file("certs/tls.crt"), &new.cert_pem).unwrap();
    std::fs::write(gw.file("certs/tls.key"), &new.key_pem).unwrap();
    wait_generation(&gw, before.generation).await;

    let served = served_leaf(&gw).await;
    assert_eq!(
        fingerprint(&served),
        fingerprint(&first_cert_in(&gw.file("certs/tls.crt"))),
        "a new handshake gets the certificate now in the file"
    );
    assert_ne!(fingerprint(&served), fingerprint(&old.der));
    let trusting_new = Client::new(gw.https, Proto::H1, tls_config_trusting(&[new.der]));
    assert_eq!(trusting_new.get("/ping").await.status, 200);

    // The connection opened before the swap keeps its session and keeps serving.
    let resp = get_on(&mut kept, gw.https, "/ping")
        .await
        .expect("the keep-alive connection opened before the swap still works");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_secret_swap_of_cert_and_key_reaches_new_handshakes() {
    let secret = tempfile::tempdir().unwrap();
    let old = &certs().default;
    let mut volume = K8sVolume::create(
        &secret.path().join("tls"),
        &[
            ("tls.crt", old.cert_pem.as_bytes()),
            ("tls.key", old.key_pem.as_bytes()),
        ],
    );
    let config = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{}",
        volume.path("tls.crt").display(),
        volume.path("tls.key").display(),
        respond("/ping", "pong")
    );
    let gw = TestGateway::start(&config).await;
    let mut generation = settle(&gw).await.generation;
    assert_eq!(served_leaf(&gw).await, old.der);

    // Two swaps: the second proves the watch survived the first (and the removal of the old
    // timestamped folder).
    for leaf in [fresh_leaf(), fresh_leaf()] {
        volume.update(&[
            ("tls.crt", leaf.cert_pem.as_bytes()),
            ("tls.key", leaf.key_pem.as_bytes()),
        ]);
        generation = wait_generation(&gw, generation).await.generation;
        let served = served_leaf(&gw).await;
        assert_eq!(
            fingerprint(&served),
            fingerprint(&first_cert_in(&volume.path("tls.crt")))
        );
        assert_eq!(served, leaf.der);
    }
    assert_eq!(generation, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_cert_and_key_are_refused_then_a_good_pair_applies() {
    let gw = TestGateway::start(&respond("/ping", "pong")).await;
    let before = settle(&gw).await;
    let (cert_path, key_path) = (gw.file("certs/tls.crt"), gw.file("certs/tls.key"));
    let old = &certs().default;
    let new = fresh_leaf();

    save_atomically(&cert_path, &new.cert_pem);
    let refused = wait_status(&gw, "the mismatched pair to be refused", |s| !s.ok).await;

    // The key path names the setting: the key is what does not fit the certificate.
    let want = format!(
        "{}: tls.key: {}: private key does not match certificate {}",
        gw.file("gateway.toml").display(),
        key_path.display(),
        cert_path.display()
    );
    assert_eq!(refused.error.as_deref(), Some(want.as_str()));
    assert_eq!(refused.generation, before.generation);
    assert_eq!(
        served_leaf(&gw).await,
        old.der,
        "the old pair is still served"
    );
    let resp = post_reload(gw.admin.unwrap()).await;
    assert_eq!(resp.status, 422);
    assert_eq!(resp.json(), json!({"ok": false, "error": want}));
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["last_reload"]["ok"], false);
    assert_eq!(config["last_reload"]["error"], want.as_str());

    save_atomically(&key_path, &new.key_pem);
    let applied = wait_generation(&gw, before.generation).await;
    assert_eq!(applied.generation, before.generation + 1);
    assert_eq!(served_leaf(&gw).await, new.der);
    assert_eq!(
        gw.admin_get("/config").await.json()["last_reload"]["ok"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_answers_changed_false_then_changed_true() {
    // The config has watch_files = false (see LinkedConfig), so no watcher
    // reload races the POSTs below: each answer is about exactly the change before it.
    let (dir, linked) = LinkedConfig::new(&compose_config(&respond("/old", "old")));
    let gw = TestGateway::start_in(dir, linked.path()).await;
    let before = settle(&gw).await;
    let admin = gw.admin.unwrap();

    let resp = post_reload(admin).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        resp.json(),
        json!({"ok": true, "changed": false, "generation": before.generation})
    );
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["generation"], before.generation);
    assert_eq!(config["content_hash"], before.content_hash.as_str());
    assert_eq!(config["last_reload"]["attempts"], before.attempts + 1);
    assert_eq!(config["last_reload"]["ok"], true);

    linked.write(&compose_config(&respond("/new", "new")));
    let resp = post_reload(admin).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({"ok": true, "changed": true, "generation": before.generation + 1, "restart_needed": []})
    );
    // POST /reload answers after the swap: the very next request sees the new routes.
    assert_serves(&gw, "/new", "new").await;
    assert_eq!(gw.get("/old").await.error(404), "no route for /old");
    let config = gw.admin_get("/config").await.json();
    assert_eq!(config["generation"], before.generation + 1);
    assert_eq!(config["last_reload"]["attempts"], before.attempts + 2);
}

/// A `gatehouse run` child process, killed when dropped.
struct Child {
    process: tokio::process::Child,
    log: std::path::PathBuf,
}

impl Child {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let pid = self.process.id().expect("gatehouse is running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }

    /// Polls the admin `/config` (every 20 ms, for at most 10 s) until `done` holds.
    async fn poll_config(
        &mut self,
        admin: SocketAddr,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = serde_json::Value::Null;
        loop {
            if let Some(exit) = self.process.try_wait().unwrap() {
                panic!(
                    "gatehouse exited ({exit}) while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(admin).await.is_ok() {
                last = get_plain(admin, "/config").await.json();
                if done(&last) {
                    return last;
                }
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}; last /config: {last}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A listener on `127.0.0.1:0`: its port is free again once it is dropped.
fn free_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_to_the_real_binary_reloads() {
    let (https_port, admin_port) = (free_port(), free_port());
    let https = https_port.local_addr().unwrap();
    let admin = admin_port.local_addr().unwrap();
    drop((https_port, admin_port));
    let config = |body: &str| {
        compose_config(&format!(
            "[server]\nlisten = \"{https}\"\nadmin_listen = \"{admin}\"\n{body}"
        ))
    };
    // Through a symlink into an unwatched folder: only the SIGHUP can make it reload.
    let (dir, linked) = LinkedConfig::new(&config(&respond("/old", "old")));
    let log = dir.path().join("gatehouse.log");
    let process = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["run", "-c"])
        .arg(linked.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("gatehouse starts");
    let mut child = Child { process, log };

    let started = child
        .poll_config(admin, "the admin listener", |c| c["generation"] == 1)
        .await;
    let attempts = started["last_reload"]["attempts"].as_u64().unwrap();
    let client = Client::h1(https);
    assert_eq!(client.get("/old").await.text(), "old");

    // Nothing changed: the SIGHUP is one more attempt, same generation.
    child.signal("-HUP");
    let unchanged = child
        .poll_config(admin, "the SIGHUP reload attempt", |c| {
            c["last_reload"]["attempts"].as_u64() > Some(attempts)
        })
        .await;
    assert_eq!(unchanged["generation"], 1);
    assert_eq!(unchanged["last_reload"]["ok"], true);

    linked.write(&config(&respond("/new", "new")));
    child.signal("-HUP");
    let reloaded = child
        .poll_config(admin, "the SIGHUP reload to apply", |c| {
            c["generation"] == 2
        })
        .await;
    assert_eq!(reloaded["last_reload"]["ok"], true);
    assert_eq!(client.get("/new").await.text(), "new");
    assert_eq!(client.get("/old").await.error(404), "no route for /old");
    assert!(
        child.process.try_wait().unwrap().is_none(),
        "SIGHUP does not stop gatehouse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_opened_before_ten_reloads_still_echoes() {
    let up = Upstream::websocket_echo().await;
    let base = format!(
        "{}{}",
        upstream_toml("echo", &[up.addr], ""),
        route_toml("/ws", "echo", "websocket = true")
    );
    let gw = TestGateway::start(&base).await;
    let mut generation = settle(&gw).await.generation;
    let mut ws = gw
        .websocket("/ws", None)
        .await
        .expect("WebSocket handshake");
    assert_echoes(&mut ws, "before").await;

    for i in 0..10 {
        let comment = if i % 2 == 0 { "# on\n" } else { "" };
        let body = format!("{comment}{base}{}", respond(&format!("/dummy-{i}"), "d"));
        save_atomically(&gw.file("gateway.toml"), compose_config(&body));
        generation = wait_generation(&gw, generation).await.generation;
        assert_serves(&gw, &format!("/dummy-{i}"), "d").await;
    }

    assert_eq!(generation, 11);
    assert_echoes(&mut ws, "after ten reloads").await;
    assert_eq!(up.count(), 1, "the same tunnel, not a new handshake");
    let mut fresh = gw.websocket("/ws", None).await.expect("a new WebSocket");
    assert_echoes(&mut fresh, "fresh").await;
    within("close", ws.close(None)).await.unwrap();
}

/// What the pounding clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, kind: &str, path: &str, result: anyhow::Result<Resp>) -> bool {
        let want = if path == "/ping" { "pong" } else { "ok" };
        let problem = match result {
            Ok(resp) if resp.status.is_success() && resp.body == want.as_bytes() => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Ok(resp) => format!("{} {:?}", resp.status, resp.text()),
            Err(error) => format!("transport error: {error:#}"),
        };
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 20 {
            failures.push(format!("{kind} GET {path}: {problem}"));
        }
        false
    }
}

/// Upper bound on requests per client task, should the stop flag never come.
const MAX_REQUESTS_PER_TASK: u64 = 200_000;

fn path_for(i: u64) -> &'static str {
    if i.is_multiple_of(2) {
        "/ping"
    } else {
        "/api/item"
    }
}

/// Sequential requests on one HTTP/1.1 keep-alive connection (reconnecting after a failure).
async fn pound_h1_keepalive(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> u64 {
    let config = tls_config(&[b"http/1.1"], rustls::ALL_VERSIONS);
    let mut conn = None;
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) && sent < MAX_REQUESTS_PER_TASK {
        let path = path_for(sent);
        sent += 1;
        if conn.is_none() {
            match h1_keepalive(addr, config.clone()).await {
                Ok((sender, _)) => conn = Some(sender),
                Err(error) => {
                    tally.record("h1 keep-alive", path, Err(error));
                    continue;
                }
            }
        }
        let sender = conn.as_mut().expect("connected above");
        if !tally.record("h1 keep-alive", path, get_on(sender, addr, path).await) {
            conn = None;
        }
    }
    sent
}

/// Sequential requests as streams of one shared h2 connection.
async fn pound_h2(
    mut sender: http2::SendRequest<Body>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> u64 {
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) && sent < MAX_REQUESTS_PER_TASK {
        let path = path_for(sent);
        sent += 1;
        let result = async {
            within("h2 connection ready", sender.ready()).await?;
            let resp = within("h2 response", sender.send_request(h2_get(addr, path))).await?;
            Ok(Resp::collect(resp).await)
        }
        .await;
        tally.record("h2", path, result);
    }
    sent
}

/// Sequential requests each on a fresh connection (a new handshake with whatever TLS config
/// is current).
async fn pound_fresh(client: Client, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> u64 {
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) && sent < MAX_REQUESTS_PER_TASK {
        let path = path_for(sent);
        sent += 1;
        let result = async {
            let resp = client
                .try_send_streaming(Request::get(path).body(empty()).unwrap())
                .await?;
            Ok(Resp::collect(resp).await)
        }
        .await;
        tally.record("fresh connection", path, result);
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_request_fails_during_fifty_back_to_back_reloads() {
    let up = Upstream::text("ok").await;
    let base = format!(
        "{}{}{}",
        upstream_toml("api", &[up.addr], ""),
        route_toml("/api", "api", ""),
        respond("/ping", "pong")
    );
    let gw = TestGateway::start(&base).await;
    let first = settle(&gw).await.generation;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());

    let h2 = h2_connection(gw.https).await.unwrap();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..2 {
        clients.spawn(pound_h1_keepalive(gw.https, stop.clone(), tally.clone()));
        clients.spawn(pound_h2(h2.clone(), gw.https, stop.clone(), tally.clone()));
    }
    clients.spawn(pound_fresh(gw.client(), stop.clone(), tally.clone()));
    clients.spawn(pound_fresh(gw.h2_client(), stop.clone(), tally.clone()));
    // Let every client get going before the first reload.
    within("the clients' first requests", async {
        while tally.ok.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < 20 {
            tokio::task::yield_now().await;
        }
    })
    .await;

    let started = Instant::now();
    let at_start = tally.ok.load(Ordering::Relaxed);
    let mut generation = first;
    for i in 0..50 {
        let comment = if i % 2 == 0 { "# on\n" } else { "" };
        let body = format!("{comment}{base}{}", respond(&format!("/dummy-{i}"), "d"));
        save_atomically(&gw.file("gateway.toml"), compose_config(&body));
        generation = wait_generation(&gw, generation).await.generation;
    }
    let reload_time = started.elapsed();
    let during = tally.ok.load(Ordering::Relaxed) - at_start;
    stop.store(true, Ordering::Relaxed);
    let mut per_task = Vec::new();
    while let Some(sent) = within("a client task to stop", clients.join_next()).await {
        per_task.push(sent.expect("client task did not panic"));
    }

    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    println!(
        "50 reloads in {reload_time:?}: {} requests ({ok} ok, {failed} failed), {during} while \
         reloading; per task {per_task:?}",
        ok + failed
    );
    assert_eq!(generation, first + 50, "every reload applied");
    assert_serves(&gw, "/dummy-49", "d").await;
    assert_eq!(
        failed,
        0,
        "failed requests: {:#?}",
        tally.failures.lock().unwrap()
    );
    assert!(
        per_task.iter().all(|&n| n > 0),
        "every client sent requests: {per_task:?}"
    );
    assert!(during >= 50, "requests ran during the reloads: {during}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_listen_needs_a_restart_and_the_rest_of_the_change_applies() {
    let server =
        |listen: &str| format!("[server]\nlisten = \"{listen}\"\nadmin_listen = \"127.0.0.1:0\"\n");
    // Through a symlink into an unwatched folder, so the POST's answer is this change's.
    let (dir, linked) = LinkedConfig::new(&compose_config(&format!(
        "{}{}",
        server("127.0.0.1:0"),
        respond("/old", "old")
    )));
    let gw = TestGateway::start_in(dir, linked.path()).await;
    let before = settle(&gw).await;
    let unused = free_port().local_addr().unwrap();

    linked.write(&compose_config(&format!(
        "{}{}",
        server(&unused.to_string()),
        respond("/new", "new")
    )));
    let resp = post_reload(gw.admin.unwrap()).await;

    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({
            "ok": true,
            "changed": true,
            "generation": before.generation + 1,
            "restart_needed": [format!("server.listen changed from 127.0.0.1:0 to {unused}")],
        })
    );
    // The old listener keeps serving, with the new routes.
    assert_serves(&gw, "/new", "new").await;
    assert_eq!(gw.get("/old").await.error(404), "no route for /old");
    assert!(
        TcpStream::connect(unused).await.is_err(),
        "nothing was bound to the new address"
    );
}
