//! The writer and the verifier together: real files, real chains, each kind of tampering.

use std::path::{Path, PathBuf};

use super::chain::{GENESIS, line_hash};
use super::verify::{Failure, verify};
use super::*;

/// An audit log at `dir/audit.log` with `n` records appended (each waited for).
async fn log_with(dir: &Path, n: usize) -> (AuditLog, PathBuf) {
    let path = dir.join("audit.log");
    let log = AuditLog::build(&path, 1, None).unwrap();
    append(&log, 0..n).await;
    (log, path)
}

async fn append(log: &AuditLog, ids: std::ops::Range<usize>) {
    for i in ids {
        let fields = Fields {
            request_id: &format!("req-{i}"),
            identity: Some("ci-bot"),
            auth_method: Some("token"),
            client_ip: "127.0.0.1".parse().unwrap(),
            method: "POST",
            path: "/api/x?token=REDACTED",
            route: Some("/api"),
            status: 200,
        };
        assert!(
            log.append(fields.body("2026-12-05T12:00:00.000Z"), true)
                .await
        );
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn broken_at(result: Result<verify::Summary, Failure>) -> (u64, String) {
    match result {
        Err(Failure::Broken { line, reason, .. }) => (line, reason),
        other => panic!("expected a broken record, got {other:?}"),
    }
}

#[tokio::test]
async fn records_chain_from_genesis_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, path) = log_with(dir.path(), 3).await;
    let lines = lines(&path);
    assert_eq!(lines.len(), 3);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["prev"], GENESIS);
    assert_eq!(first["identity"], "ci-bot");
    assert_eq!(first["status"], 200);
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["prev"], line_hash(lines[0].as_bytes()));
    let summary = verify(&[path], true).unwrap();
    assert_eq!(summary.records, 3);
    assert_eq!(summary.last_hash, line_hash(lines[2].as_bytes()));
    assert_eq!(summary.continues_from, None);
}

#[tokio::test]
async fn every_kind_of_tampering_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, path) = log_with(dir.path(), 5).await;
    let good = lines(&path);
    let edited = {
        let mut l = good.clone();
        l[1] = l[1].replace("\"status\":200", "\"status\":201");
        l
    };
    let inserted = {
        let mut l = good.clone();
        l.insert(2, good[1].clone());
        l
    };
    let deleted = {
        let mut l = good.clone();
        l.remove(2);
        l
    };
    let reordered = {
        let mut l = good.clone();
        l.swap(1, 2);
        l
    };
    let last_edited = {
        let mut l = good.clone();
        l[4] = l[4].replace("\"status\":200", "\"status\":500");
        assert_ne!(l[4], good[4]);
        l
    };
    let garbage = {
        let mut l = good.clone();
        l[3] = "not json".to_owned();
        l
    };
    for (name, tampered, line, reason) in [
        ("edit", edited, 2, "changed after it was written"),
        ("insertion", inserted, 3, "prev does not match"),
        ("deletion", deleted, 3, "prev does not match"),
        ("reordering", reordered, 2, "prev does not match"),
        ("garbage", garbage, 4, "not valid JSON"),
        (
            "last edited",
            last_edited,
            5,
            "changed after it was written",
        ),
    ] {
        write_lines(&path, &tampered);
        let (at, why) = broken_at(verify(std::slice::from_ref(&path), false));
        assert_eq!(at, line, "{name}: {why}");
        assert!(why.contains(reason), "{name}: {why}");
    }
    // The last line cut short.
    let mut text = good.join("\n");
    text.truncate(text.len() - 10);
    std::fs::write(&path, text).unwrap();
    let (at, why) = broken_at(verify(std::slice::from_ref(&path), false));
    assert_eq!((at, why.contains("cut short")), (5, true), "{why}");
}

#[tokio::test]
async fn a_rotated_chain_runs_on_into_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log_with(dir.path(), 2).await;
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&log, 2..4).await;
    let new = lines(&path);
    assert_eq!(new.len(), 2, "the new file holds only the new records");
    let first: serde_json::Value = serde_json::from_str(&new[0]).unwrap();
    let old = lines(&rotated);
    assert_eq!(first["prev"], line_hash(old[1].as_bytes()));
    let both = verify(&[rotated.clone(), path.clone()], true).unwrap();
    assert_eq!((both.records, both.files), (4, 2));
    // Alone, the newer file verifies from its first line, noting where it starts.
    let alone = verify(std::slice::from_ref(&path), false).unwrap();
    assert_eq!(alone.continues_from, Some(line_hash(old[1].as_bytes())));
    assert!(verify(std::slice::from_ref(&path), true).is_err());
    // In the wrong order the chain breaks at the first file's first record.
    let (at, _) = broken_at(verify(&[path.clone(), rotated], true));
    assert_eq!(at, 1);
}

#[tokio::test]
async fn a_new_writer_continues_an_existing_file_and_mends_a_cut_line() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = log_with(dir.path(), 2).await;
    drop(log);
    let second = AuditLog::build(&path, 1, None).unwrap();
    append(&second, 2..3).await;
    assert_eq!(
        verify(std::slice::from_ref(&path), true).unwrap().records,
        3
    );
    // A crash left half a line: the writer ends it, and verify names it.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.truncate(text.len() - 20);
    std::fs::write(&path, &text).unwrap();
    let third = AuditLog::build(&path, 1, None).unwrap();
    append(&third, 3..4).await;
    assert_eq!(lines(&path).len(), 4);
    let (at, why) = broken_at(verify(std::slice::from_ref(&path), true));
    assert_eq!((at, why.as_str()), (3, "not valid JSON"));
}

#[tokio::test]
async fn a_missing_file_is_unreadable_not_broken() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    assert!(matches!(
        verify(&[missing], false),
        Err(Failure::Unreadable { .. })
    ));
}

#[tokio::test]
async fn an_unwritable_path_is_refused_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let error = AuditLog::build(&dir.path().join("no/such/folder/audit.log"), 1, None).unwrap_err();
    assert_eq!(error.key, "audit.path", "{error}");
    assert!(error.reason.contains("cannot append"), "{error}");
    assert!(AuditLog::build(dir.path(), 1, None).is_err(), "a directory");
}

#[test]
fn fields_are_typed_json_and_escaped() {
    let fields = Fields {
        request_id: "r\"1",
        identity: None,
        auth_method: None,
        client_ip: "::1".parse().unwrap(),
        method: "GET",
        path: "/a\n",
        route: None,
        status: 401,
    };
    let mut line = Vec::new();
    chain::seal(&fields.body("2026-12-05T12:00:00.000Z"), GENESIS, &mut line);
    let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(value["identity"], serde_json::Value::Null);
    assert_eq!(value["route"], serde_json::Value::Null);
    assert_eq!(value["status"], 401);
    assert_eq!(value["request_id"], "r\"1");
    assert_eq!(value["path"], "/a\n");
    assert_eq!(value["client_ip"], "::1");
}

#[test]
fn time_is_rfc3339_utc_with_milliseconds() {
    let now = now_rfc3339_ms();
    assert_eq!(now.len(), "2026-12-05T12:00:00.123Z".len(), "{now}");
    assert!(now.ends_with('Z') && now.as_bytes()[19] == b'.', "{now}");
}
