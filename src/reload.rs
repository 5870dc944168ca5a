//! Live reload (SPEC §5): every trigger — a change in the parent folder of any file the runtime
//! depends on, `SIGHUP`, or admin `POST /reload` — feeds one task that debounces, builds a whole
//! new [`Runtime`] off the request path (file IO and key parsing on a blocking thread), and swaps
//! it in with one `ArcSwap` store. An invalid change is refused whole; the old runtime stays.
//!
//! Folders are watched, not files: editors replace files by rename and Kubernetes swaps a
//! `..data` symlink, so the inode a file watch would follow is gone after the first update. A
//! change in a watched folder (write, close-after-write, create, remove, rename — never an open or
//! a read, see [`is_change`]) triggers a rebuild; the swap is skipped when the content hash of
//! every file the runtime read is unchanged. The watch set follows the config: a reload that
//! names new files starts watching their folders. The config's folder is watched before the
//! first load, and one rescan runs once all folders are watched, so nothing written in between
//! is missed (arti's approach).

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, EventKind, MetadataKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, oneshot, watch};

#[cfg(target_os = "linux")]
mod folder_events;

use crate::config::{ConfigError, ConfigErrors};
use crate::runtime::{Runtime, Shared};

/// A burst (an editor's temp-write + rename, a Kubernetes symlink swap, `token revoke`'s lock +
/// temp + rename) is over once no event arrived for this long. Short, because revocation latency
/// is this plus one build (`cargo bench --bench revocation`); a slower writer only costs an extra
/// rebuild, never a wrong one (see `build_stable`).
const DEBOUNCE: Duration = Duration::from_millis(10);

/// After a failed file-triggered build, how long to wait for the rest of a change before
/// reporting the failure: two renames (a certificate, then its key) with an fsync each can be
/// further apart than [`DEBOUNCE`]. Reported failures are thus real ones, logged once.
const FAILURE_GRACE: Duration = Duration::from_millis(200);

/// Longest a burst of events can postpone a rebuild (SPEC: effective within 1 s of a write).
const MAX_SETTLE: Duration = Duration::from_millis(300);

/// What the last reload attempt did; `/config` shows it and tests wait on it.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// Generation of the runtime in use (1 = the first load).
    pub generation: u64,
    /// Reload attempts so far, applied or not (the first load counts as attempt 1).
    pub attempts: u64,
    /// Content hash of the runtime in use.
    pub content_hash: String,
    /// When the last attempt finished.
    pub(crate) at: SystemTime,
    /// Whether the last attempt succeeded (applied, or nothing had changed).
    pub ok: bool,
    /// The last attempt's error, if it failed.
    pub error: Option<String>,
    /// Changes in the running config that need a restart (listener addresses, connection cap).
    pub(crate) restart_needed: Vec<String>,
    /// Every watched folder is watched and the start-up gap is closed: from here on, a change
    /// to a file is seen as an event (a file changed in the gap was reloaded first).
    pub watching: bool,
}

impl ReloadStatus {
    /// Before the first load (generation 0); replaced when [`Reloader::handle`] is taken.
    fn first_pending() -> Self {
        Self {
            generation: 0,
            attempts: 0,
            content_hash: String::new(),
            at: SystemTime::now(),
            ok: true,
            error: None,
            restart_needed: Vec::new(),
            watching: false,
        }
    }

    /// The status after the first load.
    pub(crate) fn first(runtime: &Runtime) -> Self {
        Self {
            generation: runtime.generation,
            attempts: 1,
            content_hash: runtime.content_hash.clone(),
            at: SystemTime::now(),
            ok: true,
            error: None,
            restart_needed: Vec::new(),
            watching: false,
        }
    }

    /// Folds one attempt's outcome in; `runtime` is the one in use after it.
    fn record(&mut self, outcome: &ReloadOutcome, runtime: &Runtime) {
        self.attempts += 1;
        self.at = SystemTime::now();
        self.generation = runtime.generation;
        self.content_hash.clone_from(&runtime.content_hash);
        match outcome {
            ReloadOutcome::Applied { restart_needed, .. } => {
                self.ok = true;
                self.error = None;
                self.restart_needed.clone_from(restart_needed);
            }
            ReloadOutcome::Unchanged { .. } => {
                self.ok = true;
                self.error = None;
            }
            ReloadOutcome::Failed { error } => {
                self.ok = false;
                self.error = Some(error.clone());
            }
        }
    }
}

/// The answer to one reload request.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// A new runtime is in use.
    Applied {
        /// Its generation.
        generation: u64,
        /// Changes that need a restart to take effect (listener addresses, connection cap).
        restart_needed: Vec<String>,
    },
    /// Every file had the same content; nothing was swapped.
    Unchanged {
        /// The generation still in use.
        generation: u64,
    },
    /// The change was refused; the old runtime stays.
    Failed {
        /// What was wrong (file, key, reason), never a secret.
        error: String,
    },
}

/// Why a reload runs.
#[derive(Debug)]
pub(crate) enum Trigger {
    /// A watched folder changed.
    Files,
    /// `SIGHUP`.
    Signal,
    /// `POST /reload`, which waits for the outcome.
    Admin(oneshot::Sender<ReloadOutcome>),
}

/// Sends triggers to the reload task.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    triggers: mpsc::Sender<Trigger>,
    /// Written only by the reload task (this module is its only writer); read by `/config` and
    /// tests.
    status: Arc<watch::Sender<ReloadStatus>>,
}

impl ReloadHandle {
    /// Watches reload results (tests wait on `generation` or `attempts` with a timeout).
    pub fn status(&self) -> watch::Receiver<ReloadStatus> {
        self.status.subscribe()
    }

    /// Requests a reload and waits for its outcome.
    pub(crate) async fn reload(&self) -> ReloadOutcome {
        let (reply, outcome) = oneshot::channel();
        if self.triggers.send(Trigger::Admin(reply)).await.is_err() {
            return ReloadOutcome::Failed {
                error: "reload task is not running".into(),
            };
        }
        outcome.await.unwrap_or(ReloadOutcome::Failed {
            error: "reload task stopped".into(),
        })
    }

    /// Requests a reload without waiting (SIGHUP).
    pub(crate) fn trigger(&self) {
        let _ = self.triggers.try_send(Trigger::Signal);
    }
}

/// Watches folders and turns a change to a file the runtime reads into a (coalesced)
/// [`Trigger::Files`].
struct FolderWatch {
    backend: Option<Backend>,
    watched: BTreeSet<PathBuf>,
    /// File names (as named and as resolved through symlinks) whose changes matter; shared with
    /// whatever reads the events.
    names: Arc<RwLock<HashSet<OsString>>>,
}

/// What reports folder changes.
enum Backend {
    /// Linux: inotify asked for changes but not opens, read on the runtime ([`folder_events`]).
    #[cfg(target_os = "linux")]
    Inotify(folder_events::FolderEvents),
    /// Elsewhere, or where inotify cannot start: notify's recommended watcher.
    Notify(notify::RecommendedWatcher),
}

impl Backend {
    /// Starts reporting changes to files named in `names` as [`Trigger::Files`] on `events`.
    fn start(
        events: mpsc::Sender<Trigger>,
        names: Arc<RwLock<HashSet<OsString>>>,
    ) -> Result<Self, String> {
        #[cfg(target_os = "linux")]
        {
            let (tx, relevant) = (events.clone(), names.clone());
            let started = folder_events::FolderEvents::new(move |seen| {
                if seen.is_none_or(|name| is_relevant_name(name, &relevant)) {
                    // Capacity 1: a pending trigger already covers this event.
                    let _ = tx.try_send(Trigger::Files);
                }
            });
            match started {
                Ok(inotify) => return Ok(Self::Inotify(inotify)),
                Err(error) => tracing::debug!(%error, "inotify unavailable; trying notify"),
            }
        }
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // An error (a lost event, a queue overflow) may hide a change: rebuild to be safe.
            if let Ok(event) = &event
                && !(is_change(&event.kind) && names_a_relevant_file(event, &names))
            {
                return;
            }
            // Capacity 1: a pending trigger already covers this event.
            let _ = events.try_send(Trigger::Files);
        });
        watcher.map(Self::Notify).map_err(|error| error.to_string())
    }

    fn watch(&mut self, folder: &Path) -> Result<(), String> {
        match self {
            #[cfg(target_os = "linux")]
            Self::Inotify(inotify) => inotify.watch(folder).map_err(|error| error.to_string()),
            Self::Notify(watcher) => watcher
                .watch(folder, RecursiveMode::NonRecursive)
                .map_err(|error| error.to_string()),
        }
    }

    fn unwatch(&mut self, folder: &Path) {
        match self {
            #[cfg(target_os = "linux")]
            Self::Inotify(inotify) => inotify.unwatch(folder),
            Self::Notify(watcher) => {
                let _ = watcher.unwatch(folder);
            }
        }
    }
}

impl FolderWatch {
    fn new(events: mpsc::Sender<Trigger>) -> Self {
        let names = Arc::new(RwLock::new(HashSet::new()));
        let backend = Backend::start(events, names.clone())
            .inspect_err(|error| {
                tracing::warn!(%error, "file watching unavailable; reload with SIGHUP or POST /reload");
            })
            .ok();
        Self {
            backend,
            watched: BTreeSet::new(),
            names,
        }
    }

    /// Watches exactly the folders of `files` (none when `enabled` is false).
    fn follow(&mut self, files: &[PathBuf], enabled: bool) {
        let Some(backend) = self.backend.as_mut() else {
            return;
        };
        let files = if enabled { files } else { &[] };
        // The folder named in the config, and the folder the file really lives in when it is a
        // symlink elsewhere (certbot's live/ -> archive/, a mounted Secret's ..data).
        let wanted: BTreeSet<PathBuf> = files
            .iter()
            .flat_map(|f| {
                [
                    folder_of(f),
                    std::fs::canonicalize(f)
                        .ok()
                        .and_then(|real| folder_of(&real)),
                ]
            })
            .flatten()
            .collect();
        let names = files
            .iter()
            .flat_map(|f| [Some(f.clone()), std::fs::canonicalize(f).ok()])
            .flatten()
            .filter_map(|f| f.file_name().map(ToOwned::to_owned))
            .collect();
        if let Ok(mut current) = self.names.write() {
            *current = names;
        }
        for gone in self.watched.difference(&wanted) {
            backend.unwatch(gone);
        }
        for folder in wanted.difference(&self.watched) {
            if let Err(error) = backend.watch(folder) {
                tracing::warn!(folder = %folder.display(), %error, "cannot watch folder; changes there need SIGHUP or POST /reload");
            }
        }
        self.watched = wanted;
    }
}

/// Whether a watcher event can mean a file's content changed (SPEC §8.1). Opening, reading and
/// closing a file unwritten are not changes: every rebuild opens the config, the certificates and
/// the store, so reacting to those made each rebuild trigger the next (a reload storm).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Modify(_) => true,
        // Close(Any) may have been a write; inotify reports writes as Close(Write).
        EventKind::Access(AccessKind::Close(AccessMode::Write | AccessMode::Any)) => true,
        EventKind::Access(_) => false,
        // Unknown kinds (a rescan request after a queue overflow among them) may hide a change.
        EventKind::Any | EventKind::Other => true,
    }
}

/// Whether `event` concerns a file the runtime reads. Other files in a watched folder (a log
/// written beside `gateway.toml`, an editor's swap file, the store's lock) are not its business:
/// reacting to them rebuilt on every access-log line. Kubernetes swaps a mounted volume through
/// `..data` and `..<timestamp>` entries, which always count; so does an event naming no path.
fn names_a_relevant_file(event: &notify::Event, names: &RwLock<HashSet<OsString>>) -> bool {
    event.paths.is_empty()
        || event.paths.iter().any(|path| {
            path.file_name()
                .is_none_or(|name| is_relevant_name(name, names))
        })
}

/// Whether a change to the file `name` in a watched folder concerns the runtime (see
/// [`names_a_relevant_file`]).
fn is_relevant_name(name: &std::ffi::OsStr, names: &RwLock<HashSet<OsString>>) -> bool {
    let Ok(names) = names.read() else {
        return true;
    };
    names.contains(name) || name.as_encoded_bytes().starts_with(b"..")
}

fn folder_of(file: &Path) -> Option<PathBuf> {
    let folder = file.parent()?;
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    Some(std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_owned()))
}

/// Starts watching `config_path`'s folder — call before the first load.
pub(crate) struct Reloader {
    watch: FolderWatch,
    triggers: mpsc::Receiver<Trigger>,
    files: mpsc::Receiver<Trigger>,
    handle: ReloadHandle,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("watched", &self.watch.watched)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// Begins watching the config's folder, before the first load reads anything.
    pub(crate) fn watch_config(config_path: &Path) -> Self {
        let (file_tx, files) = mpsc::channel(1);
        let (trigger_tx, triggers) = mpsc::channel(16);
        let mut watch = FolderWatch::new(file_tx);
        watch.follow(&[config_path.to_owned()], true);
        Self {
            watch,
            triggers,
            files,
            handle: ReloadHandle {
                triggers: trigger_tx,
                status: Arc::new(watch::Sender::new(ReloadStatus::first_pending())),
            },
        }
    }

    /// A handle for SIGHUP, `POST /reload` and the reload status, which starts from the first
    /// load: the runtime `shared` holds now.
    pub(crate) fn handle(&self, shared: &Shared) -> ReloadHandle {
        let first = ReloadStatus::first(&shared.runtime.load());
        self.handle.status.send_replace(first);
        self.handle.clone()
    }

    /// Records a reload attempt's outcome: the counter in the metrics and the status readers
    /// watch.
    fn record(&self, shared: &Shared, outcome: &ReloadOutcome) {
        shared
            .metrics
            .reload(!matches!(outcome, ReloadOutcome::Failed { .. }));
        let runtime = shared.runtime.load();
        self.handle.status.send_modify(|status| {
            status.record(outcome, &runtime);
            status.watching = true;
        });
    }

    /// Runs the reload task until the process stops.
    pub(crate) async fn run(mut self, shared: Arc<Shared>) {
        self.follow(&shared);
        // One rescan now that every folder is watched closes the gap since the first load. It is
        // no reload unless a file really changed in that gap: an unchanged start counts no
        // attempt and keeps the external auth cache (a reload would empty it, SPEC §8.2).
        let mut pending = changed_since_load(&shared).await.then_some(Trigger::Files);
        if pending.is_none() {
            self.handle
                .status
                .send_modify(|status| status.watching = true);
        }
        loop {
            let first = match pending.take() {
                Some(trigger) => trigger,
                None => match self.next_trigger().await {
                    Some(trigger) => trigger,
                    None => return,
                },
            };
            let mut waiters = Vec::new();
            collect(first, &mut waiters);
            self.settle(&mut waiters).await;
            let outcome = reload_once(&shared).await;
            // Watch any newly named folders before anyone can see the new generation, so a
            // write that reacts to it cannot land in a folder not yet watched.
            self.follow(&shared);
            if let ReloadOutcome::Failed { error } = &outcome {
                if waiters.is_empty()
                    && let Some(next) = self.next_file_event_within(FAILURE_GRACE).await
                {
                    // Half of a change: `cert self-signed` or certbot renames the certificate,
                    // then the key, and the build between saw a mismatched pair. The rest of
                    // the change is here; build again instead of reporting a failure.
                    tracing::debug!(%error, "reload failed mid-change; rebuilding");
                    pending = Some(next);
                    continue;
                }
                tracing::error!(%error, "reload refused; keeping the running configuration");
            }
            self.record(&shared, &outcome);
            for waiter in waiters {
                let _ = waiter.send(outcome.clone());
            }
        }
    }

    /// Waits until no event arrived for one debounce interval (at most [`MAX_SETTLE`]), so an
    /// editor's temp-write + fsync + rename, or a symlink swap, costs one rebuild.
    async fn settle(&mut self, waiters: &mut Vec<oneshot::Sender<ReloadOutcome>>) {
        let deadline = tokio::time::Instant::now() + MAX_SETTLE;
        loop {
            tokio::time::sleep(DEBOUNCE).await;
            let mut quiet = true;
            while let Ok(trigger) = self.files.try_recv().or_else(|_| self.triggers.try_recv()) {
                quiet = false;
                collect(trigger, waiters);
            }
            if quiet || tokio::time::Instant::now() >= deadline {
                return;
            }
        }
    }
    fn follow(&mut self, shared: &Shared) {
        let runtime = shared.runtime.load();
        self.watch
            .follow(&runtime.files, runtime.config.server.watch_files);
    }

    /// The next file event if one arrives within `wait`.
    async fn next_file_event_within(&mut self, wait: Duration) -> Option<Trigger> {
        tokio::time::timeout(wait, self.files.recv())
            .await
            .ok()
            .flatten()
    }

    async fn next_trigger(&mut self) -> Option<Trigger> {
        tokio::select! {
            Some(trigger) = self.files.recv() => Some(trigger),
            Some(trigger) = self.triggers.recv() => Some(trigger),
            else => None,
        }
    }
}

fn collect(trigger: Trigger, waiters: &mut Vec<oneshot::Sender<ReloadOutcome>>) {
    if let Trigger::Admin(reply) = trigger {
        waiters.push(reply);
    }
}

/// Whether a file the running configuration read differs from what it read (or cannot be read
/// now): the start-up gap between the first load and the watches.
async fn changed_since_load(shared: &Shared) -> bool {
    let runtime = shared.runtime.load_full();
    tokio::task::spawn_blocking(move || {
        crate::runtime::hash_files(&runtime.files) != runtime.content_hash
    })
    .await
    .unwrap_or(true)
}

/// Builds, validates and (if anything changed) swaps in a new runtime; the external auth cache
/// is emptied whatever the outcome. The caller records the
/// outcome (`Reloader::record`) once the watch set follows the new runtime.
pub(crate) async fn reload_once(shared: &Shared) -> ReloadOutcome {
    let previous = shared.runtime.load_full();
    let base = previous.clone();
    // One message, a line per problem, each naming its file and key (`/config`, the log).
    let built = match tokio::task::spawn_blocking(move || build_stable(&base)).await {
        Ok(built) => built.map_err(|errors| errors.to_string()),
        Err(_) => Err("reload build panicked".to_owned()),
    };
    // Every reload empties the external auth decision cache (SPEC §8.2), changed or not: an
    // operator who revoked a credential at the auth service reloads to make it count now. A
    // swapped-in runtime starts with an empty cache; the kept one is cleared here.
    if let Some(external) = &previous.auth.external {
        external.clear();
    }
    match built {
        Err(error) => ReloadOutcome::Failed { error },
        Ok(runtime) if runtime.content_hash == previous.content_hash => ReloadOutcome::Unchanged {
            generation: previous.generation,
        },
        Ok(runtime) => {
            let restart_needed = restart_needed(shared.bound(), &runtime);
            for change in &restart_needed {
                tracing::warn!(change = %change, "needs a restart to take effect; the rest of the change is applied");
            }
            let generation = runtime.generation;
            shared.runtime.store(Arc::new(runtime));
            tracing::info!(generation, "reloaded");
            ReloadOutcome::Applied {
                generation,
                restart_needed,
            }
        }
    }
}

/// Most rebuilds when files keep changing while they are read.
const STABLE_BUILD_TRIES: usize = 3;

/// Builds a runtime whose content hash matches what it parsed: the files are hashed before and
/// after the build, and a change in between (an editor's rename landing mid-build) means the
/// build may have parsed old bytes under the new hash, so it is redone.
fn build_stable(previous: &Runtime) -> Result<Runtime, ConfigErrors> {
    let mut files = previous.files.clone();
    let mut last = None;
    for _ in 0..STABLE_BUILD_TRIES {
        let before = crate::runtime::hash_files(&files);
        let config = crate::config::load(&previous.config.path)?;
        let runtime = Runtime::build(config, Some(previous))?;
        if runtime.files == files && runtime.content_hash == before {
            return Ok(runtime);
        }
        files.clone_from(&runtime.files);
        last = Some(runtime);
    }
    // Still changing: apply the newest build but with a hash nothing matches, so the next event
    // (the writes are still coming) rebuilds instead of being skipped as unchanged.
    let mut runtime = last.ok_or_else(|| {
        ConfigErrors(vec![ConfigError {
            file: previous.config.path.clone(),
            key: String::new(),
            reason: "files kept changing during the reload".to_owned(),
        }])
    })?;
    runtime.content_hash = String::from("unsettled");
    Ok(runtime)
}

/// Settings bound at start that a reload cannot change, compared with what is really bound (so
/// a pending restart stays reported after further reloads).
fn restart_needed(bound: &crate::runtime::Bound, new: &Runtime) -> Vec<String> {
    let (old_server, new_server) = (&bound.server, &new.config.server);
    let mut changes = Vec::new();
    if old_server.listen != new_server.listen {
        changes.push(format!(
            "server.listen changed from {} to {}",
            old_server.listen, new_server.listen
        ));
    }
    if old_server.plain_listen != new_server.plain_listen {
        changes.push("server.plain_listen changed".to_owned());
    }
    if old_server.admin_listen != new_server.admin_listen {
        changes.push(format!(
            "server.admin_listen changed from {} to {}",
            old_server.admin_listen, new_server.admin_listen
        ));
    }
    if bound.max_connections != new.config.limits.max_connections {
        changes.push("limits.max_connections changed".to_owned());
    }
    changes
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn opening_and_reading_are_not_changes() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
        ] {
            assert!(!is_change(&kind), "{kind:?}");
        }
    }

    #[test]
    fn writes_creates_removes_and_renames_are_changes() {
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
            EventKind::Other,
        ] {
            assert!(is_change(&kind), "{kind:?}");
        }
    }
}
