//! Folder watching on Linux, straight on inotify, read on the runtime.
//!
//! notify's inotify backend asks the kernel for every open of any file in a watched folder, and
//! reads the events on a thread of its own, woken for each one. A folder holding a certificate
//! often holds other files too: the shared benchmark writes h2load's log beside its
//! certificate, and notify's thread, woken on the gateway's core for every write to it, cost
//! about 1 µs a request (BENCHMARKS.md, "The file watcher"). Here the kernel reports what can
//! change a file — writes, closes after writing, creates, deletes, renames, attribute changes,
//! and the folder itself moved or deleted — but no opens, and a task on the runtime reads them.
//! It reads when the runtime next polls for IO, so a busy runtime reads a burst of writes to
//! one file at once, and the kernel merges repeats of the same event waiting in the queue.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

/// What the kernel reports about a watched folder: what can change a file, no opens or reads.
/// Writes count from the first one (SPEC §5: a change takes effect within 1 s of the write,
/// even while the writer keeps the file open).
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

/// What one event names: a file in a watched folder, or (`None`) the folder itself or the
/// whole queue (an overflow may have hidden anything).
pub(super) type Seen<'a> = Option<&'a OsStr>;

/// Watched folders and the task that reads their events; dropping it stops both.
pub(super) struct FolderEvents {
    watches: Watches,
    by_folder: Vec<(PathBuf, WatchDescriptor)>,
    reader: tokio::task::JoinHandle<()>,
}

impl FolderEvents {
    /// Starts reading events; `on_event` is called for each one (on the runtime, so it must
    /// not block). Must be called inside a tokio runtime.
    pub(super) fn new(on_event: impl Fn(Seen<'_>) + Send + 'static) -> io::Result<Self> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let mut events = inotify.into_event_stream(vec![0u8; 4096])?;
        let reader = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    // The kernel's own notice that a watch is gone: after our `unwatch`, or
                    // after the folder's DELETE_SELF, which was reported already.
                    Ok(event) if event.mask.contains(EventMask::IGNORED) => {}
                    Ok(event) if event.mask.contains(EventMask::Q_OVERFLOW) => on_event(None),
                    Ok(event) => on_event(event.name.as_deref()),
                    // A read error may have lost an event: report it as a change of anything,
                    // and stop rather than retry an error that may repeat at once.
                    Err(error) => {
                        on_event(None);
                        tracing::warn!(%error, "file watching stopped; reload with SIGHUP or POST /reload");
                        break;
                    }
                }
            }
        });
        Ok(Self {
            watches,
            by_folder: Vec::new(),
            reader,
        })
    }

    /// Watches `folder` (not recursively).
    pub(super) fn watch(&mut self, folder: &Path) -> io::Result<()> {
        let descriptor = self.watches.add(folder, mask())?;
        self.by_folder.retain(|(watched, _)| watched != folder);
        self.by_folder.push((folder.to_owned(), descriptor));
        Ok(())
    }

    /// Stops watching `folder`.
    pub(super) fn unwatch(&mut self, folder: &Path) {
        if let Some(at) = self.by_folder.iter().position(|(f, _)| f == folder) {
            let (_, descriptor) = self.by_folder.swap_remove(at);
            let _ = self.watches.remove(descriptor);
        }
    }
}

impl Drop for FolderEvents {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::io::Write as _;
    use std::time::Duration;
    use tokio::sync::mpsc;

    fn recorder() -> (
        impl Fn(Seen<'_>) + Send + 'static,
        mpsc::UnboundedReceiver<OsString>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let record = move |seen: Seen<'_>| {
            let _ = tx.send(seen.map_or_else(|| OsString::from("<folder>"), ToOwned::to_owned));
        };
        (record, rx)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<OsString>) -> OsString {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event within 5 s")
            .expect("the reader is running")
    }

    #[tokio::test]
    async fn a_write_is_reported_while_the_file_is_open_and_opens_are_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokens.toml"), b"old").unwrap();
        let (record, mut rx) = recorder();
        let mut events = FolderEvents::new(record).unwrap();
        events.watch(dir.path()).unwrap();
        // Opened and read: no event (a rebuild reads every file; that must not trigger one).
        let _ = std::fs::read(dir.path().join("tokens.toml")).unwrap();
        let mut store = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("tokens.toml"))
            .unwrap();
        store.write_all(b"new").unwrap();
        assert_eq!(
            next(&mut rx).await,
            "tokens.toml",
            "the write, file still open"
        );
        drop(store);
        // Whatever the write's repeats and the close reported, the marker comes after them.
        std::fs::write(dir.path().join("marker"), b"x").unwrap();
        while next(&mut rx).await != "marker" {}
    }

    /// The names reported until `marker` (created now in `dir`) is.
    async fn until_marker(
        rx: &mut mpsc::UnboundedReceiver<OsString>,
        dir: &Path,
        marker: &str,
    ) -> Vec<OsString> {
        std::fs::write(dir.join(marker), b"x").unwrap();
        let mut seen = Vec::new();
        loop {
            let name = next(rx).await;
            if name == marker {
                return seen;
            }
            seen.push(name);
        }
    }

    #[tokio::test]
    async fn renames_deletes_and_unwatched_folders() {
        let dir = tempfile::tempdir().unwrap();
        let (record, mut rx) = recorder();
        let mut events = FolderEvents::new(record).unwrap();
        events.watch(dir.path()).unwrap();
        std::fs::write(dir.path().join("cert.tmp"), b"x").unwrap();
        assert!(
            until_marker(&mut rx, dir.path(), "m1")
                .await
                .contains(&"cert.tmp".into())
        );
        std::fs::rename(dir.path().join("cert.tmp"), dir.path().join("cert.pem")).unwrap();
        let renamed = until_marker(&mut rx, dir.path(), "m2").await;
        assert!(
            renamed.contains(&"cert.tmp".into()),
            "moved from: {renamed:?}"
        );
        assert!(
            renamed.contains(&"cert.pem".into()),
            "moved to: {renamed:?}"
        );
        std::fs::remove_file(dir.path().join("cert.pem")).unwrap();
        assert!(
            until_marker(&mut rx, dir.path(), "m3")
                .await
                .contains(&"cert.pem".into())
        );
        events.unwatch(dir.path());
        let other = tempfile::tempdir().unwrap();
        events.watch(other.path()).unwrap();
        std::fs::write(dir.path().join("unwatched"), b"x").unwrap();
        std::fs::write(other.path().join("watched"), b"x").unwrap();
        // The last marker's own write and close may still be queued; nothing else may be.
        let mut name = next(&mut rx).await;
        while name == "m3" {
            name = next(&mut rx).await;
        }
        assert_eq!(name, "watched", "the unwatched folder is silent");
    }
}
