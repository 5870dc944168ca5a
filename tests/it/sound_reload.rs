//! SPEC §8.1 (issue 9, fault 1): reload only on change. The watcher once reacted to open and
//! access events, so every rebuild (which opens the config, the certificates and the store)
//! triggered the next: an idle gateway reloaded ~85 times a second and a broken edit logged
//! its error ~100 times a second. These tests watch what must *not* happen over a bounded
//! window, each with a positive control showing the watcher is alive.

use std::time::Duration;

use gatehouse::token_cmd;
use time::OffsetDateTime;

use crate::support::gateway::compose_config;
use crate::support::reload::{settle, wait_generation, wait_status};
use crate::support::{TestGateway, certs, static_route_toml};

/// Long enough for a storm to show many times over (it reloaded every ~12 ms), short for CI.
const IDLE_WINDOW: Duration = Duration::from_secs(2);

/// A debounce (10 ms) plus a build, with slack for a loaded machine: a reload triggered by
/// what happened before this window would have shown by its end.
const QUIET_WINDOW: Duration = Duration::from_millis(500);

/// A gateway over certificate files, a token store and a route, settled after its startup rescan.
async fn watched_gateway() -> TestGateway {
    let body = format!(
        "[auth]\ntokens = \"tokens.toml\"\n{}",
        static_route_toml("/ok", "respond = { status = 200, body = \"ok\" }")
    );
    let dir = tempfile::tempdir().unwrap();
    certs().write_into(dir.path());
    token_cmd::create(
        &dir.path().join("tokens.toml"),
        "ci-bot",
        &["viewer".to_owned()],
        None,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, compose_config(&body)).unwrap();
    let gw = TestGateway::start_in(dir, &config).await;
    settle(&gw).await;
    gw
}

fn attempts(gw: &TestGateway) -> u64 {
    gw.gateway().reload_handle().status().borrow().attempts
}

#[tokio::test]
async fn an_idle_gateway_never_reloads() {
    let gw = watched_gateway().await;
    let before = attempts(&gw);
    assert_eq!(
        before, 1,
        "only the first load counts: an unchanged start-up rescan is none"
    );
    tokio::time::sleep(IDLE_WINDOW).await;
    assert_eq!(
        attempts(&gw),
        before,
        "reload attempts while idle for {IDLE_WINDOW:?}"
    );
    // Control: a real change is still seen.
    let config = gw.file("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("body = \"ok\"", "body = \"changed\"")).unwrap();
    let generation = gw.gateway().reload_handle().status().borrow().generation;
    wait_generation(&gw, generation).await;
}

#[tokio::test]
async fn reading_every_watched_file_is_not_a_change() {
    let gw = watched_gateway().await;
    let before = attempts(&gw);
    let files = gw.gateway().shared().runtime.load().files.clone();
    assert!(
        files.len() >= 4,
        "config, cert, key and store are watched: {files:?}"
    );
    for _ in 0..20 {
        for file in &files {
            std::fs::read(file).unwrap();
        }
    }
    tokio::time::sleep(QUIET_WINDOW).await;
    assert_eq!(
        attempts(&gw),
        before,
        "reads of {files:?} triggered reloads"
    );
    assert_eq!(gw.get("/ok").await.status, 200);
}

#[tokio::test]
async fn a_broken_edit_fails_once_not_in_a_loop() {
    let gw = watched_gateway().await;
    let before = attempts(&gw);
    std::fs::write(gw.file("gateway.toml"), "[server\nbroken").unwrap();
    let failed = wait_status(&gw, "the broken edit to be refused", |s| {
        s.attempts > before && !s.ok
    })
    .await;
    tokio::time::sleep(QUIET_WINDOW).await;
    let after = attempts(&gw);
    // One write may be seen as two events (modify, close-after-write) a debounce apart.
    assert!(
        after <= failed.attempts + 1,
        "the failing state was retried in a loop: {} attempts after the first failure",
        after - failed.attempts
    );
    assert_eq!(gw.get("/ok").await.status, 200, "the old runtime stays");
}

#[tokio::test]
async fn writes_to_other_files_beside_the_config_are_not_changes() {
    let gw = watched_gateway().await;
    let before = attempts(&gw);
    // `gatehouse run > gatehouse.log` in the config's folder: one write per access-log line.
    let log = gw.file("gatehouse.log");
    for line in 0..50 {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        std::io::Write::write_all(&mut file, format!("line {line}\n").as_bytes()).unwrap();
    }
    std::fs::write(gw.file("certs/notes.txt"), "unrelated").unwrap();
    tokio::time::sleep(QUIET_WINDOW).await;
    assert_eq!(
        attempts(&gw),
        before,
        "writes to unrelated files triggered reloads"
    );
}

/// `gatehouse cert self-signed` and certbot rename the certificate, then the key; with an
/// fsync each, the two can land further apart than the debounce. The half-way state (new
/// certificate, old key) must not be reported as a failed reload.
#[tokio::test]
async fn a_certificate_then_key_rotation_is_not_a_failed_reload() {
    let gw = watched_gateway().await;
    let status = gw.gateway().reload_handle().status().borrow().clone();
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    crate::support::files::save_atomically(&gw.file("certs/tls.crt"), generated.cert.pem());
    // The gap a slow disk puts between the two renames (the scenario, not a synchronisation).
    tokio::time::sleep(Duration::from_millis(60)).await;
    crate::support::files::save_atomically(
        &gw.file("certs/tls.key"),
        generated.signing_key.serialize_pem(),
    );
    let applied = wait_generation(&gw, status.generation).await;
    tokio::time::sleep(QUIET_WINDOW).await;
    let now = gw.gateway().reload_handle().status().borrow().clone();
    assert!(now.ok && applied.ok, "{now:?}");
    let metrics = gw.admin_get("/metrics").await.text();
    assert!(
        metrics.contains("gatehouse_reloads_total{result=\"error\"} 0"),
        "a half-way state was reported as a failed reload:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("reloads_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
