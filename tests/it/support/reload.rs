//! Waiting on reload results: bounded waits on the gateway's reload-status channel, never
//! sleeps.

use std::time::Duration;

use gatehouse::reload::ReloadStatus;

use super::TestGateway;

/// How long a reload may take to show up in the status (SPEC §5 promises 1 s; the slack is
/// for a loaded test machine).
pub const RELOAD_WAIT: Duration = Duration::from_secs(5);

/// Waits (bounded by [`RELOAD_WAIT`]) until the reload status satisfies `done`.
pub async fn wait_status(
    gw: &TestGateway,
    what: &str,
    done: impl FnMut(&ReloadStatus) -> bool,
) -> ReloadStatus {
    let mut rx = gw.gateway().reload_handle().status();
    let waited = tokio::time::timeout(RELOAD_WAIT, rx.wait_for(done))
        .await
        .map(|seen| seen.map(|s| s.clone()));
    match waited {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => panic!("reload status channel closed while waiting for {what}"),
        Err(_) => panic!(
            "timed out after {RELOAD_WAIT:?} waiting for {what}; last status: {:?}",
            *rx.borrow()
        ),
    }
}

/// Waits for a runtime newer than `before` to be swapped in.
pub async fn wait_generation(gw: &TestGateway, before: u64) -> ReloadStatus {
    let status = wait_status(gw, &format!("a generation after {before}"), |s| {
        s.generation > before
    })
    .await;
    assert!(status.ok, "the reload that applied is ok: {status:?}");
    status
}

/// Waits until the watcher is up and the start-up gap is closed, so a test's own change is what
/// the next reload sees; returns the status then.
pub async fn settle(gw: &TestGateway) -> ReloadStatus {
    let status = wait_status(gw, "the watcher to be up", |s| s.watching).await;
    assert_eq!(
        status.generation, 1,
        "nothing changed since start: {status:?}"
    );
    assert!(status.ok, "{status:?}");
    status
}
