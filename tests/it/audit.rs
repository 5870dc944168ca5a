//! The audit log (SPEC §7, `[audit] path`; issue 12 item 1) through a real gateway: one
//! hash-chained line per authenticated request and per auth denial with typed fields and no
//! credential in it, a write's line on disk before the client has its response, rotation, reload
//! and restart continuing the chain, an unwritable folder refused, the fail-closed policy for
//! writes, and `gatehouse audit verify` (the real binary) catching each kind of tampering.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use gatehouse::reload::ReloadOutcome;
use http::{Method, Request};
use serde_json::Value;

use crate::support::auth::Layout;
use crate::support::gateway::compose_config;
use crate::support::{Resp, TestGateway, Upstream, empty, route_toml, upstream_toml, within};

// ------------------------------------------------------------------------------------ helpers

/// Tokens in the store: `viewer` may read `/api`, `operator` may write it.
struct Tokens {
    viewer: String,
    operator: String,
}

/// The config body: token store, `[audit] path = audit`, `/api` (token; viewer reads, operator
/// writes) and a public `/public`, both to `up`.
fn config(up: &Upstream, audit: &Path) -> String {
    format!(
        "[auth]\ntokens = \"tokens.toml\"\n\n[audit]\npath = \"{}\"\n{}\n\
         [[routes]]\npath = \"/api\"\nupstream = \"api-service\"\nauth = [\"token\"]\n\
         roles = [\"viewer\"]\nwrite_roles = [\"operator\"]\n{}",
        audit.display(),
        upstream_toml("api-service", &[up.addr], ""),
        route_toml("/public", "api-service", ""),
    )
}

/// A gateway auditing to `audit` (an absolute path the test owns, so it outlives the gateway).
async fn audited_gateway(up: &Upstream, audit: &Path) -> (TestGateway, Tokens) {
    let layout = Layout::new();
    let tokens = Tokens {
        viewer: layout.mint("ci-viewer", &["viewer"]),
        operator: layout.mint("ci-operator", &["operator"]),
    };
    (layout.start(&config(up, audit)).await, tokens)
}

/// `method path` with an optional bearer token; returns the response.
async fn call(gw: &TestGateway, method: Method, path: &str, token: Option<&str>) -> Resp {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    gw.client().send(request.body(empty()).unwrap()).await
}

fn request_id(resp: &Resp) -> String {
    resp.header("x-request-id").unwrap().to_owned()
}

/// The audit file's lines, parsed.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits (bounded) until the file holds `n` records; reads are appended off the request path.
async fn wait_for_records(path: &Path, n: usize) -> Vec<Value> {
    within(&format!("{n} audit records in {}", path.display()), async {
        loop {
            let got = records(path);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// The record with this request id.
fn record_for<'a>(records: &'a [Value], id: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["request_id"] == id)
        .unwrap_or_else(|| panic!("no audit record for {id} in {records:#?}"))
}

/// `gatehouse audit verify FILES…` (the real binary).
async fn verify(files: &[&Path]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command.args(["audit", "verify"]).args(files);
    let output = command.stdin(Stdio::null()).kill_on_drop(true).output();
    within("gatehouse audit verify", output).await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts exit 0 and returns stdout.
async fn verified(files: &[&Path]) -> String {
    let output = verify(files).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "verify {files:?}: {}{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Asserts exit 1 and returns stderr.
async fn refused(files: &[&Path]) -> String {
    let output = verify(files).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "verify {files:?} must fail: {}{}",
        stdout(&output),
        stderr(&output)
    );
    stderr(&output)
}

/// `gatehouse_audit_write_errors_total` from `/metrics`.
async fn write_errors(gw: &TestGateway) -> u64 {
    let text = gw.admin_get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix("gatehouse_audit_write_errors_total "))
        .unwrap_or_else(|| panic!("no audit metric in\n{text}"))
        .parse()
        .unwrap()
}

// -------------------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_requests_and_denials_are_audited_without_credentials() {
    let up = Upstream::text("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let (gw, tokens) = audited_gateway(&up, &audit).await;
    let secret_query = "QuerySecret42";
    let bogus = "gth_NotARealTokenNotARealTokenNotARealToken0000000";

    let read = call(
        &gw,
        Method::GET,
        &format!("/api/items?access_token={secret_query}&page=2"),
        Some(&tokens.viewer),
    )
    .await;
    assert_eq!(read.status, 200);
    let missing = call(&gw, Method::GET, "/api/items", None).await;
    assert_eq!(missing.status, 401);
    let invalid = call(&gw, Method::GET, "/api/items", Some(bogus)).await;
    assert_eq!(invalid.status, 401);
    let forbidden = call(&gw, Method::DELETE, "/api/items/1", Some(&tokens.viewer)).await;
    assert_eq!(forbidden.error(403), "role operator required");
    let public = call(&gw, Method::GET, "/public/x", None).await;
    assert_eq!(public.status, 200);
    let write = call(&gw, Method::POST, "/api/items", Some(&tokens.operator)).await;
    assert_eq!(write.status, 200);

    let got = wait_for_records(&audit, 5).await;
    let check = |resp: &Resp, identity: Value, method: &str, path: &str, status: u64| {
        let record = record_for(&got, &request_id(resp));
        let want_method = match identity {
            Value::Null => Value::Null,
            _ => Value::from("token"),
        };
        assert_eq!(record["identity"], identity, "{record}");
        assert_eq!(record["auth_method"], want_method, "{record}");
        assert_eq!(record["method"], method, "{record}");
        assert_eq!(record["path"], path, "{record}");
        assert_eq!(record["route"], "/api", "{record}");
        assert_eq!(record["status"], status, "{record}");
        assert_eq!(record["client_ip"], "127.0.0.1", "{record}");
        let time = record["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
            "RFC 3339 UTC with milliseconds: {time}"
        );
        let keys: Vec<&str> = record
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 11, "{keys:?}");
    };
    check(
        &read,
        "ci-viewer".into(),
        "GET",
        "/api/items?access_token=REDACTED&page=2",
        200,
    );
    check(&missing, Value::Null, "GET", "/api/items", 401);
    check(&invalid, Value::Null, "GET", "/api/items", 401);
    check(
        &forbidden,
        "ci-viewer".into(),
        "DELETE",
        "/api/items/1",
        403,
    );
    check(&write, "ci-operator".into(), "POST", "/api/items", 200);
    assert_eq!(got.len(), 5, "the public request is not audited: {got:#?}");
    assert!(!got.iter().any(|r| r["request_id"] == request_id(&public)));

    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in [
        tokens.viewer.as_str(),
        tokens.operator.as_str(),
        bogus,
        secret_query,
    ] {
        assert!(!text.contains(secret), "a credential reached the audit log");
    }
    let summary = verified(&[&audit]).await;
    assert!(
        summary.starts_with("ok: 5 records in 1 file, chain intact; last hash "),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_on_disk_before_the_client_has_its_response() {
    let up = Upstream::text("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let (gw, tokens) = audited_gateway(&up, &audit).await;
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let resp = call(&gw, method.clone(), "/api/w", Some(&tokens.operator)).await;
        assert_eq!(resp.status, 200);
        // No wait: the line must already be there.
        let last = records(&audit).pop().expect("a record");
        assert_eq!(last["request_id"], request_id(&resp), "{method}");
        assert_eq!(last["method"], method.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_kind_of_tampering() {
    let up = Upstream::text("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let (gw, tokens) = audited_gateway(&up, &audit).await;
    for _ in 0..5 {
        let resp = call(&gw, Method::POST, "/api/x", Some(&tokens.operator)).await;
        assert_eq!(resp.status, 200);
    }
    let good: Vec<String> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(good.len(), 5);
    verified(&[&audit]).await;

    let copy = dir.path().join("tampered.log");
    let shown = copy.display().to_string();
    let write = |lines: &[String]| std::fs::write(&copy, lines.join("\n") + "\n").unwrap();
    let mismatch = "prev does not match the previous record";
    let edited = "the record was changed after it was written (its hash does not match)";
    let cases: Vec<(&str, Vec<String>, String)> = vec![
        (
            "edit",
            {
                let mut l = good.clone();
                l[1] = l[1].replace("\"status\":200", "\"status\":204");
                l
            },
            format!("{shown}:2: {edited}"),
        ),
        (
            "edit of the last record (no later prev covers it)",
            {
                let mut l = good.clone();
                let last = l.len() - 1;
                l[last] = l[last].replace("\"status\":200", "\"status\":201");
                assert_ne!(l[last], good[last], "the edit must change the line");
                l
            },
            format!("{shown}:{}: {edited}", good.len()),
        ),
        (
            "insertion",
            {
                let mut l = good.clone();
                l.insert(3, good[0].clone());
                l
            },
            format!("{shown}:4: {mismatch} ({shown}:3)"),
        ),
        (
            "deletion",
            {
                let mut l = good.clone();
                l.remove(1);
                l
            },
            format!("{shown}:2: {mismatch} ({shown}:1)"),
        ),
        (
            "reordering",
            {
                let mut l = good.clone();
                l.swap(2, 3);
                l
            },
            format!("{shown}:3: {mismatch} ({shown}:2)"),
        ),
        (
            "not JSON",
            {
                let mut l = good.clone();
                l[4] = "{\"time\": broken".to_owned();
                l
            },
            format!("{shown}:5: not valid JSON"),
        ),
    ];
    for (name, lines, want) in cases {
        write(&lines);
        let error = refused(&[&copy]).await;
        assert_eq!(error.trim_end(), want, "{name}");
    }
    // The last line cut short (a truncated file).
    let mut text = good.join("\n") + "\n";
    text.truncate(text.len() - 30);
    std::fs::write(&copy, text).unwrap();
    let error = refused(&[&copy]).await;
    assert_eq!(
        error.trim_end(),
        format!("{shown}:5: the line is cut short (no newline at its end)")
    );
    // The first record deleted: the chain no longer starts at genesis; a note, or with
    // --require-genesis a failure.
    write(&good[1..]);
    let ok = verify(&[&copy]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stderr(&ok).starts_with(&format!("note: {shown}:1 continues an earlier chain")));
    let strict = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["audit", "verify", "--require-genesis"])
        .arg(&copy)
        .output();
    let strict = within("verify --require-genesis", strict).await.unwrap();
    assert_eq!(strict.status.code(), Some(1));
    assert!(stderr(&strict).starts_with(&format!("{shown}:1: prev is not the genesis value")));
    // A missing file: exit 1 with a clear error, not a usage error (2).
    let missing = dir.path().join("missing.log");
    let error = refused(&[&audit, &missing]).await;
    assert!(
        error.starts_with(&format!("cannot read {}: ", missing.display())),
        "{error}"
    );
    // The original was never touched.
    verified(&[&audit]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_continues_the_chain_into_the_new_file() {
    let up = Upstream::text("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    let (gw, tokens) = audited_gateway(&up, &audit).await;
    for _ in 0..3 {
        assert_eq!(
            call(&gw, Method::GET, "/api/r", Some(&tokens.viewer))
                .await
                .status,
            200
        );
    }
    wait_for_records(&audit, 3).await;
    // logrotate without copytruncate: rename away, no signal.
    std::fs::rename(&audit, &rotated).unwrap();
    let read = call(&gw, Method::GET, "/api/r", Some(&tokens.viewer)).await;
    let write = call(&gw, Method::POST, "/api/w", Some(&tokens.operator)).await;
    assert_eq!((read.status.as_u16(), write.status.as_u16()), (200, 200));
    let new = records(&audit);
    assert_eq!(new.len(), 2, "the new file holds the new records: {new:#?}");
    assert_eq!(new[0]["request_id"], request_id(&read));
    assert_eq!(
        records(&rotated).len(),
        3,
        "nothing more went to the renamed file"
    );

    let summary = verified(&[&rotated, &audit]).await;
    assert!(summary.starts_with("ok: 5 records in 2 files"), "{summary}");
    // The newer file alone verifies from its first line, with a note.
    let alone = verify(&[&audit]).await;
    assert_eq!(alone.status.code(), Some(0));
    assert!(stderr(&alone).contains("continues an earlier chain"));
    // Given in the wrong order, the chain breaks where the files meet.
    let error = refused(&[&audit, &rotated]).await;
    assert!(
        error.starts_with(&format!("{}:1: prev does not match", rotated.display())),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reopens_and_a_restart_continues_the_chain() {
    let up = Upstream::text("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("audit.log");
    let second = dir.path().join("audit-2.log");
    let (gw, tokens) = audited_gateway(&up, &first).await;
    assert_eq!(
        call(&gw, Method::POST, "/api/a", Some(&tokens.operator))
            .await
            .status,
        200
    );

    // A reload to a new path: the next record goes there, chained to the last one.
    std::fs::write(
        gw.file("gateway.toml"),
        compose_config(&config(&up, &second)),
    )
    .unwrap();
    // (The file watcher may have applied it first: then this reload finds it unchanged.)
    let outcome = gw.gateway().reload().await;
    assert!(
        matches!(
            outcome,
            ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged { .. }
        ),
        "{outcome:?}"
    );
    let runtime = gw.gateway().shared().runtime.load_full();
    assert_eq!(runtime.config.audit.as_deref(), Some(second.as_path()));
    assert_eq!(
        call(&gw, Method::POST, "/api/b", Some(&tokens.operator))
            .await
            .status,
        200
    );
    assert_eq!((records(&first).len(), records(&second).len()), (1, 1));

    // A reload to a folder that does not exist is refused; the old runtime keeps auditing.
    let nowhere = dir.path().join("no-such-folder/audit.log");
    std::fs::write(
        gw.file("gateway.toml"),
        compose_config(&config(&up, &nowhere)),
    )
    .unwrap();
    match gw.gateway().reload().await {
        ReloadOutcome::Failed { error } => assert!(error.contains("audit.path"), "{error}"),
        other => panic!("reload to an unwritable audit folder applied: {other:?}"),
    }
    assert_eq!(
        call(&gw, Method::POST, "/api/c", Some(&tokens.operator))
            .await
            .status,
        200
    );
    assert_eq!(records(&second).len(), 2);

    // Restart: a new process (here a new gateway) continues from the file's last line.
    std::fs::write(
        gw.file("gateway.toml"),
        compose_config(&config(&up, &second)),
    )
    .unwrap();
    gw.shutdown();
    within("gateway stop", gw.wait()).await.unwrap();
    let (again, tokens) = audited_gateway(&up, &second).await;
    assert_eq!(
        call(&again, Method::POST, "/api/d", Some(&tokens.operator))
            .await
            .status,
        200
    );
    assert_eq!(records(&second).len(), 3);
    let summary = verified(&[&first, &second]).await;
    assert!(summary.starts_with("ok: 4 records in 2 files"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_audit_folder_refuses_to_start() {
    let up = Upstream::text("ok").await;
    let dir = tempfile::tempdir().unwrap();
    // A missing folder (refused even as root, where permissions do not bind).
    let body = config(&up, &dir.path().join("missing/audit.log"));
    let error = TestGateway::try_start(&body)
        .await
        .err()
        .expect("start refused")
        .0;
    assert!(format!("{error:#}").contains("audit.path"), "{error:#}");
    // A directory where the file should be.
    let body = config(&up, dir.path());
    assert!(TestGateway::try_start(&body).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_audit_log_refuses_writes_and_keeps_serving_reads() {
    let up = Upstream::text("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    let (gw, tokens) = audited_gateway(&up, &audit).await;
    assert_eq!(
        call(&gw, Method::POST, "/api/a", Some(&tokens.operator))
            .await
            .status,
        200
    );
    assert_eq!(write_errors(&gw).await, 0);

    // The file becomes unwritable at runtime: moved away and a directory in its place (works
    // as root too, unlike chmod).
    std::fs::rename(&audit, &rotated).unwrap();
    std::fs::create_dir(&audit).unwrap();
    let read = call(&gw, Method::GET, "/api/r", Some(&tokens.viewer)).await;
    assert_eq!(
        read.status, 200,
        "reads are served while the audit log fails"
    );
    within("the failed append to be counted", async {
        while write_errors(&gw).await == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let forwarded = up.count();
    let refused = call(&gw, Method::POST, "/api/b", Some(&tokens.operator)).await;
    assert_eq!(refused.error(503), "audit log unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        up.count(),
        forwarded,
        "a write is not forwarded while audit fails"
    );
    assert_eq!(
        write_errors(&gw).await,
        2,
        "the read's and the refusal's records"
    );

    // The path is usable again: the next refused write's own record succeeds, and writes flow.
    std::fs::remove_dir(&audit).unwrap();
    let healing = call(&gw, Method::POST, "/api/c", Some(&tokens.operator)).await;
    assert_eq!(healing.error(503), "audit log unavailable");
    let resumed = call(&gw, Method::POST, "/api/d", Some(&tokens.operator)).await;
    assert_eq!(resumed.status, 200);
    assert_eq!(up.count(), forwarded + 1);
    assert_eq!(write_errors(&gw).await, 2);
    let new = records(&audit);
    assert_eq!(new.len(), 2, "{new:#?}");
    assert_eq!(new[0]["request_id"], request_id(&healing));
    assert_eq!(new[0]["status"], 503);
    // Missing records are missing, but the chain itself is unbroken.
    verified(&[&rotated, &audit]).await;
}
