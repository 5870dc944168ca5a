//! Folder watching on Linux, straight on inotify, with a mask of our own.
//!
//! notify's inotify backend asks the kernel for every open and every write of any file in a
//! watched folder. A folder holding a certificate often holds other files too: a log written
//! beside it woke the watcher's thread on each write, on the gateway's core. The shared
//! benchmark writes h2load's log beside its certificate, and that cost gatehouse about 1 µs a
//! request (BENCHMARKS.md, "The file watcher"). Here the kernel reports only what can finish a
//! change: a file closed after writing, created, deleted, renamed, or its attributes changed,
//! and the folder itself moved or deleted. A file still being written is seen when it is
//! closed, which is also when it is whole.
//!
//! The events are read by a task on the runtime: relevant ones are rare, and the irrelevant
//! ones no longer reach user space at all.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

/// What the kernel reports about a watched folder: the ends of changes only.
fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
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
                    // A read error may have lost an event: report it as a change of anything.
                    Err(_) => on_event(None),
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
    async fn writes_to_an_open_file_are_not_reported_until_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = std::fs::File::create(dir.path().join("access.log")).unwrap();
        let (record, mut rx) = recorder();
        let mut events = FolderEvents::new(record).unwrap();
        events.watch(dir.path()).unwrap();
        for _ in 0..200 {
            writeln!(log, "a log line written beside the certificate").unwrap();
        }
        log.flush().unwrap();
        // A marker created after the writes: had the writes been reported, they came first.
        std::fs::write(dir.path().join("marker"), b"x").unwrap();
        assert_eq!(next(&mut rx).await, "marker", "the writes were reported");
        drop(log);
        assert_eq!(next(&mut rx).await, "marker", "the marker's own close");
        assert_eq!(
            next(&mut rx).await,
            "access.log",
            "closing the log reports it"
        );
    }

    #[tokio::test]
    async fn renames_deletes_and_unwatched_folders() {
        let dir = tempfile::tempdir().unwrap();
        let (record, mut rx) = recorder();
        let mut events = FolderEvents::new(record).unwrap();
        events.watch(dir.path()).unwrap();
        std::fs::write(dir.path().join("cert.tmp"), b"x").unwrap();
        assert_eq!(next(&mut rx).await, "cert.tmp");
        assert_eq!(next(&mut rx).await, "cert.tmp");
        std::fs::rename(dir.path().join("cert.tmp"), dir.path().join("cert.pem")).unwrap();
        assert_eq!(next(&mut rx).await, "cert.tmp", "moved from");
        assert_eq!(next(&mut rx).await, "cert.pem", "moved to");
        std::fs::remove_file(dir.path().join("cert.pem")).unwrap();
        assert_eq!(next(&mut rx).await, "cert.pem");
        events.unwatch(dir.path());
        let other = tempfile::tempdir().unwrap();
        events.watch(other.path()).unwrap();
        std::fs::write(dir.path().join("unwatched"), b"x").unwrap();
        std::fs::write(other.path().join("watched"), b"x").unwrap();
        assert_eq!(
            next(&mut rx).await,
            "watched",
            "the unwatched folder is silent"
        );
    }
}
