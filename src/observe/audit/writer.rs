//! The one writer of an audit file: a thread that owns the file and the chain's last hash.
//!
//! Requests hand finished record bodies over a bounded channel; the thread takes whatever is
//! queued, seals each body with `prev` (the chain order is the channel order, so there is exactly
//! one sequence), and appends the batch with one `write(2)`. A request that waits (a write method)
//! gets its answer only after that `write(2)` returned.
//!
//! Before each batch the thread checks that the path still names the open file (same device and
//! inode): a file renamed away by logrotate, removed, or replaced is noticed and the path is
//! reopened. A reload (a record from a newer runtime generation) reopens too, at the new
//! runtime's path. Opening a file that already has lines continues the chain from its last line;
//! opening an empty or new one continues from the last line written (so a rotated chain runs
//! on into the new file).
//!
//! No `fsync`: a record acknowledged to a request is in the kernel, so it survives a crash of
//! gatehouse but not of the machine. Syncing every batch would put a disk flush (milliseconds)
//! on every write request.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::chain;

/// Records queued before a request must wait for the writer (back-pressure, never a drop).
const QUEUE: usize = 1024;

/// Most records sealed into one `write(2)`.
const BATCH: usize = 256;

/// One record on its way to the file.
#[derive(Debug)]
pub(super) struct Entry {
    /// The record's JSON without `prev` and the closing brace.
    pub(super) body: Vec<u8>,
    /// Generation of the runtime that served the request.
    pub(super) generation: u64,
    /// That runtime's `[audit] path`.
    pub(super) target: Arc<PathBuf>,
    /// Told whether the record reached the file, for requests that wait.
    pub(super) done: Option<oneshot::Sender<bool>>,
}

/// State the request path reads: health and the error count.
#[derive(Debug)]
pub(super) struct Health {
    /// False after a failed write until the next successful one.
    pub(super) ok: AtomicBool,
    /// Records that could not be written.
    pub(super) errors: AtomicU64,
}

/// The sending side, shared by every runtime of one gateway (reloads reuse it).
#[derive(Debug)]
pub(super) struct Sink {
    pub(super) queue: mpsc::Sender<Entry>,
    pub(super) health: Arc<Health>,
}

impl Sink {
    /// Starts the writer thread for `path`; the file is opened with the first batch.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub(super) fn start(path: Arc<PathBuf>, generation: u64) -> Result<Self, String> {
        let (queue, records) = mpsc::channel(QUEUE);
        let health = Arc::new(Health {
            ok: AtomicBool::new(true),
            errors: AtomicU64::new(0),
        });
        let writer = Writer {
            records,
            health: health.clone(),
            path,
            generation,
            file: None,
            last: chain::GENESIS.to_owned(),
            needs_newline: false,
        };
        std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        Ok(Self { queue, health })
    }
}

/// An open audit file and what identifies it on disk.
#[derive(Debug)]
struct Open {
    file: File,
    id: Option<(u64, u64)>,
}

/// The writer thread's state.
struct Writer {
    records: mpsc::Receiver<Entry>,
    health: Arc<Health>,
    path: Arc<PathBuf>,
    generation: u64,
    file: Option<Open>,
    /// Hash of the last line in the chain.
    last: String,
    /// The open file ends in a cut-short line: write a newline before the next record.
    needs_newline: bool,
}

impl Writer {
    /// Runs until every sender is gone (the last runtime using this log was dropped).
    fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(first) = self.records.blocking_recv() {
            batch.push(first);
            while batch.len() < BATCH {
                match self.records.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
            self.write_batch(&mut batch);
        }
    }

    fn write_batch(&mut self, batch: &mut Vec<Entry>) {
        if let Some(newest) = batch
            .iter()
            .filter(|e| e.generation > self.generation)
            .max_by_key(|e| e.generation)
        {
            // A reload: reopen, at the new runtime's path.
            self.generation = newest.generation;
            self.path = newest.target.clone();
            self.file = None;
        }
        let result = self.append(batch);
        let ok = match result {
            Ok(last) => {
                self.last = last;
                self.needs_newline = false;
                true
            }
            Err(error) => {
                // Reopen next time: the file may be gone, replaced or cut short.
                self.file = None;
                self.health
                    .errors
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(
                    path = %self.path.display(),
                    %error,
                    records = batch.len(),
                    "audit log write failed; write requests are refused (503) until it works again"
                );
                false
            }
        };
        self.health.ok.store(ok, Ordering::Relaxed);
        for entry in batch.drain(..) {
            if let Some(done) = entry.done {
                let _ = done.send(ok);
            }
        }
    }

    /// Seals and writes the batch; returns the new last hash.
    fn append(&mut self, batch: &[Entry]) -> io::Result<String> {
        self.ensure_open()?;
        let mut buf = Vec::with_capacity(batch.iter().map(|e| e.body.len() + 80).sum());
        if self.needs_newline {
            buf.push(b'\n');
        }
        let mut last = self.last.clone();
        for entry in batch {
            let start = buf.len();
            chain::seal(&entry.body, &last, &mut buf);
            last = chain::line_hash(&buf[start..]);
            buf.push(b'\n');
        }
        let open = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("audit file not open"))?;
        open.file.write_all(&buf)?;
        Ok(last)
    }

    /// Opens the path if nothing is open or the open file is no longer the one at the path.
    fn ensure_open(&mut self) -> io::Result<()> {
        if let Some(open) = &self.file {
            let current = std::fs::metadata(&*self.path).ok().map(|m| file_id(&m));
            if current.is_some() && current == Some(open.id) {
                return Ok(());
            }
            tracing::info!(path = %self.path.display(), "audit log moved or replaced; reopening");
        }
        self.file = None;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&*self.path)?;
        let id = file_id(&file.metadata()?);
        let tail = chain::read_tail(&mut file)?;
        if let Some(hash) = tail.last_hash {
            self.last = hash;
        }
        self.needs_newline = tail.needs_newline;
        self.file = Some(Open { file, id });
        Ok(())
    }
}

/// Device and inode: what stays the same while a path names the same file.
#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    Some((meta.dev(), meta.ino()))
}

/// Elsewhere only a missing file is noticed.
#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}
